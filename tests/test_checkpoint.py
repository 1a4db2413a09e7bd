"""Checkpoints: round trips on every backend, atomic writes, clear errors, PyTorch interop."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.numpy as st_numpy

from xprnn import GRU, LSTM, RNN, Linear, checkpoint
from xprnn.backend import backend_name, device_of, dtype_name, to_numpy
from xprnn.checkpoint import CONFIG_NAME, WEIGHTS_NAME, load, save
from xprnn.models import LanguageModel, SequenceClassifier
from xprnn.nn.embedding import Embedding

from ._helpers import rel_error

IDS = np.array([[3, 5, 7, 2, 9, 4, 11], [1, 8, 6, 10, 0, 0, 0]])
LENGTHS = np.array([7, 4])
# same weights on the same backend run the same operations: float64 must agree exactly
TOL = {"float32": 1e-6, "float64": 0.0}


def _classifier(xp=None, dtype="float64", seed=1, device=None):
    return SequenceClassifier(12, 4, 5, 3, cell="lstm", num_layers=2, bidirectional=True,
                              dropout=0.3, pooling="mean", xp=xp, device=device, dtype=dtype,
                              seed=seed)


def _language_model(xp=None, dtype="float64", seed=2, device=None):
    return LanguageModel(12, 6, 6, cell="gru", num_layers=2, dropout=0.2, tie_weights=True,
                         xp=xp, device=device, dtype=dtype, seed=seed)


MODELS = {"classifier": _classifier, "language_model": _language_model}


def _logits(model):
    model.eval()
    if isinstance(model, SequenceClassifier):
        return to_numpy(model.forward(IDS, LENGTHS)[0])
    return to_numpy(model.forward(IDS)[0])


def _assert_on(model, device):
    """Every parameter of ``model`` lives on ``device`` (when one is given)."""
    if device is not None:
        assert all(device_of(v) == device for v in model.state_dict().values())


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        np.testing.assert_array_equal(to_numpy(sa[k]), to_numpy(sb[k]), err_msg=k)


def _tensors_and_metadata(file):
    with safetensors.safe_open(file, framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def _rewrite(file, tensors=None, metadata=None):
    """Re-save ``file`` with edited tensors and/or metadata (``None`` keeps the saved ones)."""
    old_tensors, old_metadata = _tensors_and_metadata(file)
    st_numpy.save_file(old_tensors if tensors is None else tensors, file,
                       metadata=old_metadata if metadata is None else metadata)


@pytest.fixture
def saved(tmp_path):
    """A float64 classifier saved on NumPy, with the directory it was saved in."""
    model = _classifier()
    model.meta = {"vocab": ["<pad>", "<unk>", "the"], "classes": ["neg", "pos"], "level": "word"}
    return model, save(model, tmp_path / "ckpt")


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_round_trip_on_backend(xp, device, tmp_path, kind, dtype):
    model = MODELS[kind](xp, dtype, device=device)
    model.meta = {"vocab": ["<pad>", "a", "b"], "level": "char"}
    save(model, tmp_path / "m")
    assert sorted(os.listdir(tmp_path / "m")) == sorted([CONFIG_NAME, WEIGHTS_NAME])
    loaded = load(tmp_path / "m", xp=xp, device=device)
    assert type(loaded) is type(model)
    _assert_on(loaded, device)
    assert backend_name(loaded.xp) == backend_name(xp)
    assert dtype_name(loaded.dtype) == dtype  # the saved dtype is the default
    assert loaded.config == model.config and loaded.meta == model.meta
    _assert_same_weights(model, loaded)
    assert rel_error(_logits(loaded), _logits(model)) <= TOL[dtype]


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_saved_on_numpy_loaded_on_backend_and_back(xp, device, asarray, tmp_path, kind):
    dtype = "float32"
    save(MODELS[kind](None, dtype), tmp_path / "np")
    # the target may be given as an array, whose backend and device are taken
    on_xp = load(tmp_path / "np", xp=asarray(np.zeros(1)))
    assert backend_name(on_xp.xp) == backend_name(xp)
    _assert_on(on_xp, device)
    # the same seed builds the same weights directly on xp: an independent reference
    reference = MODELS[kind](xp, dtype, device=device)
    _assert_same_weights(on_xp, reference)
    assert rel_error(_logits(on_xp), _logits(reference)) <= TOL[dtype]

    save(on_xp, tmp_path / "xp")
    back = load(tmp_path / "xp")
    assert backend_name(back.xp) == "numpy"
    _assert_same_weights(back, reference)
    a, b = st_numpy.load_file(tmp_path / "np" / WEIGHTS_NAME), st_numpy.load_file(
        tmp_path / "xp" / WEIGHTS_NAME)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_dtype_override_casts(xp, device, saved):
    model, path = saved
    f32 = load(path, xp=xp, device=device, dtype="float32")
    assert dtype_name(f32.dtype) == "float32"
    _assert_on(f32, device)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(to_numpy(f32.state_dict()[k]), v.astype(np.float32))


def test_load_accepts_the_file_itself(xp, device, saved):
    model, path = saved
    loaded = load(path / WEIGHTS_NAME, xp=xp, device=device)
    _assert_on(loaded, device)
    _assert_same_weights(model, loaded)
    assert loaded.meta == model.meta


def test_model_save_method_and_config_json(xp, device, tmp_path):
    model = _language_model(xp, device=device)
    model.meta = {"level": "char", "vocab": ["a", "b"]}
    assert model.save(tmp_path / "new" / "dir") == tmp_path / "new" / "dir"  # parents created
    readable = json.loads((tmp_path / "new" / "dir" / CONFIG_NAME).read_text())
    _, metadata = _tensors_and_metadata(tmp_path / "new" / "dir" / WEIGHTS_NAME)
    assert readable == {**metadata, "config": json.loads(metadata["config"]),
                        "meta": json.loads(metadata["meta"])}
    assert readable["format"] == "xprnn" and readable["class"] == "LanguageModel"
    assert readable["config"] == model.config and readable["meta"] == model.meta


LAYERS = {
    "lstm": lambda **kw: LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True, **kw),
    "gru": lambda **kw: GRU(3, 4, bias=False, dropout=0.5, num_layers=2, **kw),
    "rnn_relu": lambda **kw: RNN(3, 4, nonlinearity="relu", **kw),
    "linear": lambda **kw: Linear(3, 2, bias=False, **kw),
    "embedding": lambda **kw: Embedding(7, 3, padding_idx=-1, **kw),
}
LAYER_ATTRS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
               "bidirectional", "nonlinearity", "in_features", "out_features", "num_embeddings",
               "embedding_dim", "padding_idx")


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_plain_layers_round_trip(xp, device, tmp_path, kind):
    layer = LAYERS[kind](xp=xp, device=device, dtype="float64", seed=3)
    save(layer, tmp_path / kind)
    loaded = load(tmp_path / kind, xp=xp, device=device)
    _assert_on(loaded, device)
    assert type(loaded) is type(layer)
    for attr in LAYER_ATTRS:
        assert getattr(loaded, attr, None) == getattr(layer, attr, None), attr
    _assert_same_weights(layer, loaded)


# -- atomic writes -----------------------------------------------------------------------------


def _assert_untouched(path, before, model):
    assert sorted(os.listdir(path)) == sorted([CONFIG_NAME, WEIGHTS_NAME])  # no stray temp file
    assert (path / WEIGHTS_NAME).read_bytes() == before
    _assert_same_weights(load(path), model)


def test_crash_before_rename_keeps_old_checkpoint(xp, device, saved, monkeypatch):
    model, path = saved
    before = (path / WEIGHTS_NAME).read_bytes()
    renamed = []

    def crash(src, dst):
        renamed.append(os.path.getsize(src))  # the temporary file was fully written
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save(_classifier(xp, seed=9, device=device), path)
    monkeypatch.undo()
    assert renamed and renamed[0] > 0
    _assert_untouched(path, before, model)


def test_writer_killed_midway_keeps_old_checkpoint(xp, device, saved, monkeypatch):
    model, path = saved
    before = (path / WEIGHTS_NAME).read_bytes()
    real_write = checkpoint.write_safetensors

    def dies_halfway(tensors, filename, metadata=None):
        real_write(tensors, filename, metadata=metadata)
        data = Path(filename).read_bytes()
        Path(filename).write_bytes(data[: len(data) // 2])
        raise KeyboardInterrupt  # not an Exception: the clean-up must still run

    monkeypatch.setattr(checkpoint, "write_safetensors", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save(_classifier(xp, seed=9, device=device), path)
    monkeypatch.undo()
    _assert_untouched(path, before, model)


# -- errors ------------------------------------------------------------------------------------


def test_missing_paths(tmp_path):
    with pytest.raises(ValueError, match="no such file or directory"):
        load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=f"{WEIGHTS_NAME}: no such file"):
        load(tmp_path / "empty")


@pytest.mark.parametrize("damage", ["truncated", "random", "empty", "header_only"])
def test_corrupt_file(saved, damage):
    _, path = saved
    file = path / WEIGHTS_NAME
    data = file.read_bytes()
    new = {
        "truncated": data[:-13],
        "random": np.random.default_rng(0).bytes(len(data)),
        "empty": b"",
        "header_only": data[:8],
    }[damage]
    file.write_bytes(new)
    with pytest.raises(ValueError, match=f"{file.name}: not a readable safetensors file"):
        load(path)


def _edit(path, fn):
    tensors, _ = _tensors_and_metadata(path / WEIGHTS_NAME)
    fn(tensors)
    _rewrite(path / WEIGHTS_NAME, tensors=tensors)


def test_wrong_shape_names_the_tensor(saved):
    _, path = saved
    _edit(path, lambda t: t.update({"rnn.weight_hh_l1": t["rnn.weight_hh_l1"][:-1]}))
    with pytest.raises(ValueError, match=r"'rnn.weight_hh_l1' has shape \(19, 5\), expected "
                                         r"\(20, 5\)"):
        load(path)


def test_missing_and_unexpected_tensors(saved):
    _, path = saved
    _edit(path, lambda t: t.update({"extra.weight": t.pop("fc.bias")}))
    with pytest.raises(ValueError, match=r"missing \['fc.bias'\], unexpected \['extra.weight'\]"):
        load(path)


@pytest.mark.parametrize("bad", ["int64", "float16", "mixed"])
def test_bad_dtypes(saved, bad):
    _, path = saved
    name = "fc.weight"
    dtype = "float32" if bad == "mixed" else bad
    _edit(path, lambda t: t.update({name: t[name].astype(dtype)}))
    with pytest.raises(ValueError, match="fc.weight" if bad != "mixed" else "mix dtypes"):
        load(path)


@pytest.mark.parametrize("field, value, message", [
    ("class", "Transformer", "unknown model class 'Transformer'"),
    ("format", "pt", "not an xprnn checkpoint"),
    ("config", "{not json", "metadata 'config' is not valid JSON"),
    ("meta", "[1, 2]", "metadata 'meta' must be a JSON object"),
    ("config", json.dumps({"vocab_size": 12, "layers": 3}), "does not build a SequenceClassifier"),
    ("config", json.dumps({"vocab_size": 12, "embedding_dim": 4, "hidden_size": 5,
                           "num_classes": 3, "cell": "transformer"}), "cell must be one of"),
])
def test_bad_metadata(saved, field, value, message):
    _, path = saved
    _, metadata = _tensors_and_metadata(path / WEIGHTS_NAME)
    _rewrite(path / WEIGHTS_NAME, metadata={**metadata, field: value})
    with pytest.raises(ValueError, match=message) as info:
        load(path)
    assert WEIGHTS_NAME in str(info.value)


def test_foreign_safetensors_file(tmp_path):
    file = tmp_path / "foreign.safetensors"
    st_numpy.save_file({"weight": np.zeros((2, 2))}, file)  # no metadata at all
    with pytest.raises(ValueError, match="not an xprnn checkpoint"):
        load(file)


def test_save_errors(xp, device, tmp_path):
    model = _classifier(xp, device=device)
    with pytest.raises(TypeError, match="save expects an xprnn module"):
        save(object(), tmp_path / "x")
    model.meta = {"vocab": {"a", "b"}}  # a set is not JSON
    with pytest.raises(TypeError, match="model.meta must be JSON-serialisable"):
        save(model, tmp_path / "x")
    model.meta = ["vocab"]
    with pytest.raises(TypeError, match="model.meta must be a dict, got list"):
        save(model, tmp_path / "x")
    model.meta = {}
    with pytest.raises(ValueError, match="must be a directory"):
        save(model, tmp_path / "weights.safetensors")
    assert not (tmp_path / "x").exists()


def test_bad_target_is_a_type_error(saved):
    _, path = saved
    with pytest.raises(TypeError, match="float32 or float64"):
        load(path, dtype="int8")
    with pytest.raises(TypeError, match="expected an array module"):
        load(path, xp="numpy")


# -- interoperability --------------------------------------------------------------------------


def test_safetensors_numpy_reads_pytorch_names(xp, device, tmp_path):
    model = _classifier(xp, device=device)
    save(model, tmp_path)
    weights = st_numpy.load_file(tmp_path / WEIGHTS_NAME)
    expected = {"embedding.weight", "fc.weight", "fc.bias"} | {
        f"rnn.{w}_{m}_l{layer}{sfx}" for w in ("weight", "bias") for m in ("ih", "hh")
        for layer in (0, 1) for sfx in ("", "_reverse")}
    assert set(weights) == expected
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(weights[k], to_numpy(v))


def test_torch_reads_the_weights(xp, device, asarray, tmp_path):
    torch = pytest.importorskip("torch")
    import safetensors.torch as st_torch

    model = _classifier(xp, device=device)
    save(model, tmp_path)
    weights = st_torch.load_file(tmp_path / WEIGHTS_NAME)
    lstm = torch.nn.LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True,
                         dtype=torch.float64)
    lstm.load_state_dict({k[4:]: v for k, v in weights.items() if k.startswith("rnn.")})
    x = np.random.default_rng(0).standard_normal((2, 6, 4))
    model.eval()
    ours = model.rnn.forward(asarray(x))[0]
    with torch.no_grad():
        theirs = lstm(torch.from_numpy(x))[0].numpy()
    assert rel_error(ours, theirs) < 1e-12
