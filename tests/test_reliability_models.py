"""Issue 14, models and files: untrusted checkpoints checked before anything is built,
temporary files of killed saves removed, caches and gradients checked in ``backward``,
deterministic checkpoint bytes, a memory estimate before allocating, ``lm generate`` streaming.
Each test failed on the code before the issue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import safetensors
import safetensors.numpy as st_numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xprnn
from xprnn.checkpoint import WEIGHTS_NAME, load, save
from xprnn.cli import main
from xprnn.models import LanguageModel, SequenceClassifier


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _saved(tmp_path, **meta):
    model = SequenceClassifier(100, 8, 8, 2, seed=0)
    model.meta = meta
    return save(model, tmp_path / "ckpt") / WEIGHTS_NAME


def _rewrite(file, **fields):
    with safetensors.safe_open(file, framework="numpy") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    st_numpy.save_file(tensors, file, metadata={**metadata, **fields})


def _config(file):
    with safetensors.safe_open(file, framework="numpy") as f:
        return json.loads(f.metadata()["config"])


# -- case 4: an untrusted checkpoint is checked before it is built ---------------------------------


def test_forged_sizes_are_refused_before_anything_is_built(tmp_path, monkeypatch):
    file = _saved(tmp_path)
    saved = _config(file)
    _rewrite(file, config=json.dumps({**saved, "vocab_size": 25_000_000}))

    def built(*args, **kw):
        raise AssertionError("the model was built before the config was checked")

    monkeypatch.setattr(xprnn.nn.Embedding, "__init__", built)
    with pytest.raises(ValueError, match=r"tensor 'embedding.weight' has shape \(100, 8\), "
                                         r"expected \(25000000, 8\) from the config"):
        load(file)
    for key, value, message in [
        ("num_layers", 10**12, r"config 'num_layers' must be an integer in \[1, 10000\]"),
        ("hidden_size", "8", r"config 'hidden_size' must be an integer in \[1, 2147483647\], "
                             r"got '8'"),
        ("hidden_size", None, r"config lacks 'hidden_size'"),
        ("bidirectional", "yes", r"config 'bidirectional' must be true or false"),
    ]:
        config = {**saved, key: value}
        if value is None:
            del config[key]
        _rewrite(file, config=json.dumps(config))
        with pytest.raises(ValueError, match=message):
            load(file)


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000 + "]" * 100_000, "metadata 'config' is nested too deeply"),
    ('{"vocab_size": ' + "9" * 5000 + "}", "metadata 'config' is not valid JSON"),
], ids=["deep", "long_int"])
def test_malformed_metadata_is_a_clear_error(tmp_path, text, message):
    file = _saved(tmp_path)
    _rewrite(file, config=text)
    with pytest.raises(ValueError, match=message):
        load(file)


def test_cli_checks_the_saved_meta(tmp_path, capsys):
    file = _saved(tmp_path, task="sentiment", classes=["neg", "pos"], max_len=10,
                  truncate="head", tokenizer={"stopwords": None, "level": "word"})
    code, _, err = _run(capsys, "sentiment", "predict", "--model", file.parent, "fine film")
    assert code == 2  # was: KeyError 'vocab', a traceback
    assert "the saved meta needs 'vocab' as a dict, found nothing" in err


def _meta(**changes):
    vocab = xprnn.text.Vocabulary(["<pad>", "<unk>", "good", "bad"])
    meta = {"task": "sentiment", "vocab": vocab.to_dict(), "classes": ["neg", "pos"],
            "tokenizer": {"level": "word", "lowercase": True, "stopwords": None},
            "max_len": 10, "truncate": "head", **changes}
    return {k: v for k, v in meta.items() if v is not None}


@pytest.mark.parametrize("task, changes, message", [
    ("sentiment", {"classes": None}, "the saved meta needs 'classes' as a list, found nothing"),
    ("sentiment", {"vocab": None}, "the saved meta needs 'vocab' as a dict, found nothing"),
    ("sentiment", {"classes": 2}, "the saved meta needs 'classes' as a list, found int"),
    ("sentiment", {"tokenizer": "words"}, "the saved meta needs 'tokenizer' as a dict, found str"),
    ("sentiment", {"max_len": "10"}, "the saved meta needs 'max_len' as an int, found str"),
    ("sentiment", {"classes": [1, 2]}, "the saved classes [1, 2] do not match"),
    ("lm", {"tokenizer": {"level": "char"}}, "the saved tokenizer is malformed"),
], ids=["no_classes", "no_vocab", "int_classes", "str_tokenizer", "str_max_len",
        "int_labels", "lm_tokenizer"])
def test_export_checks_the_saved_meta_as_eval_does(tmp_path, capsys, task, changes, message):
    model = (SequenceClassifier(4, 3, 4, 2, seed=0) if task == "sentiment"
             else LanguageModel(4, 3, 4, seed=0))
    model.meta = {**_meta(**changes), "task": task}
    model.save(tmp_path / "m")
    code, out, err = _run(capsys, task, "export", "--model", tmp_path / "m", "--out",
                          tmp_path / "m.onnx")
    assert code == 2 and out == ""  # was: TypeError/AttributeError/KeyError tracebacks
    assert err.startswith(f"xprnn: error: --model {tmp_path / 'm'}: {message}")
    assert err.count("\n") == 1 and not (tmp_path / "m.onnx").exists()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8)


def test_fuzz_the_loader(tmp_path_factory):
    """Random config entries, classes and bytes: only ValueError ever escapes ``load``."""
    base = _saved(tmp_path_factory.mktemp("fuzz"))
    data, config = base.read_bytes(), _config(base)
    keys = sorted(config) + ["cell", "proj_size", "tie_weights", "extra"]

    @settings(max_examples=120, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(edits=st.dictionaries(st.sampled_from(keys), JSON, max_size=3),
           cls=st.sampled_from(["SequenceClassifier", "LanguageModel", "LSTM", "Linear",
                                "Embedding", "RNNCell"]),
           flips=st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)),
                          max_size=2))
    def check(edits, cls, flips):
        file = base.parent / "fuzz.safetensors"
        file.write_bytes(data)
        _rewrite(file, config=json.dumps({**config, **edits}), **{"class": cls})
        raw = bytearray(file.read_bytes())
        for at, value in flips:
            raw[at % len(raw)] = value
        file.write_bytes(bytes(raw))
        try:
            load(file)
        except ValueError as e:
            assert str(file) in str(e)

    check()


# -- case 5: temporary files of killed saves are removed -------------------------------------------

KILLED_SAVE = """
import os, signal, sys
from xprnn import checkpoint
from xprnn.models import SequenceClassifier
def dies(src, dst):
    os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would, before the rename
os.replace = dies
checkpoint.save(SequenceClassifier(20, 4, 4, 2, seed=1), sys.argv[1])
"""


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
def test_a_killed_save_leaves_a_temporary_that_the_next_save_removes(tmp_path):
    model = SequenceClassifier(20, 4, 4, 2, seed=0)
    save(model, tmp_path)
    r = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(tmp_path)], capture_output=True,
                       timeout=120)
    assert r.returncode == -9
    (tmp,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert tmp.name.startswith(f".{WEIGHTS_NAME}.") and tmp.stat().st_size > 0
    save(model, tmp_path)
    assert tmp.exists()  # young: it could be a concurrent save still writing
    old = time.time() - 120
    os.utime(tmp, (old, old))
    save(model, tmp_path)  # its writer is dead and it has not been touched for two minutes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", WEIGHTS_NAME]


def test_the_clean_up_rule(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    files = {"live_old": f".{WEIGHTS_NAME}.{os.getpid()}.0123456789ab.tmp",
             "dead_young": f".{WEIGHTS_NAME}.{dead.pid}.0123456789ac.tmp",
             "dead_old": f".config.json.{dead.pid}.0123456789ad.tmp",
             "legacy_old": f".{WEIGHTS_NAME}.0123456789ae.tmp",
             "live_abandoned": f".{WEIGHTS_NAME}.{os.getpid()}.0123456789af.tmp",
             "not_ours": ".notes.tmp"}
    now = time.time()
    ages = {"live_old": 120, "dead_young": 5, "dead_old": 120, "legacy_old": 120,
            "live_abandoned": 7200, "not_ours": 7200}
    for key, name in files.items():
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (now - ages[key], now - ages[key]))
    SequenceClassifier(20, 4, 4, 2).save(tmp_path)
    load(tmp_path)
    left = {k for k, name in files.items() if (tmp_path / name).exists()}
    assert left == {"live_old", "dead_young", "not_ours"}


# -- case 6: backward checks its cache and gradients -----------------------------------------------


def test_recurrent_backward_checks_the_cache(xp, device, asarray):
    x = asarray(np.random.default_rng(0).standard_normal((5, 2, 8)).astype(np.float32))
    wide, narrow = xprnn.LSTM(8, 16, xp=xp, device=device), xprnn.LSTM(4, 16, xp=xp,
                                                                        device=device)
    out, h_n, cache = wide.forward(x)
    with pytest.raises(ValueError, match=r"cache was made by another layer \(LSTM\(8, 16"):
        narrow.backward(cache, out)  # was: dx of the wrong width, silently
    with pytest.raises(TypeError, match=r"got None \(forward\(\.\.\., keep=False\)"):
        wide.backward(wide.forward(x, keep=False)[2], out)
    with pytest.raises(ValueError, match=r"d_out has shape \(5, 2, 3\), expected \(5, 2, 16\)"):
        wide.backward(cache, out[..., :3])
    with pytest.raises(ValueError, match=r"d_h_n\[1\] has shape \(1, 1, 16\), expected "
                                         r"\(1, 2, 16\)"):
        wide.backward(cache, out, (None, h_n[1][:, :1, :]))
    with pytest.raises(ValueError, match=r"d_h_n must hold 2 entries"):
        wide.backward(cache, out, h_n[0])
    dx, _, _ = wide.backward(cache, out, h_n)
    assert tuple(dx.shape) == (5, 2, 8)


@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cell_backward_checks_the_cache_and_gradients(xp, device, asarray, kind):
    cls = getattr(xprnn, kind)
    x = asarray(np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32))
    wide, narrow = cls(8, 6, xp=xp, device=device, seed=0), cls(4, 6, xp=xp, device=device)
    state, cache = wide.forward(x)
    h = state[0] if kind == "LSTMCell" else state
    with pytest.raises(ValueError, match=rf"cache was made by another layer \({kind}\(8, 6"):
        narrow.backward(cache, state)  # was: dx of the wrong width, silently
    with pytest.raises(TypeError, match=r"StepCache .* got None \(forward\(\.\.\., keep=False\)"):
        wide.backward(wide.forward(x, keep=False)[1], state)
    with pytest.raises(TypeError, match=r"got tuple"):
        wide.backward(tuple(cache), state)
    bad = h[:2, ...]
    name = r"d_state\[0\]" if kind == "LSTMCell" else "d_state"
    with pytest.raises(ValueError, match=rf"{name} has shape \(2, 6\), expected \(3, 6\) \(the "
                                         r"shape of"):
        wide.backward(cache, (bad, None) if kind == "LSTMCell" else bad)
    if kind == "LSTMCell":
        with pytest.raises(ValueError, match=r"d_state must be a tuple of 2 .* got 1 entry"):
            wide.backward(cache, h)
    dx, _, grads = wide.backward(cache, state)
    assert tuple(dx.shape) == (3, 8) and sorted(grads) == sorted(wide.state_dict())


def test_linear_and_embedding_backward_check_the_cache_and_gradient(xp, device, asarray):
    x = asarray(np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32))
    a, b = xprnn.Linear(8, 3, xp=xp, device=device), xprnn.Linear(4, 3, xp=xp, device=device)
    y, cache = a.forward(x)
    with pytest.raises(ValueError, match=r"cache was made by another layer \(Linear\(8, 3"):
        b.backward(cache, y)  # was: a raw matmul error, or silently wrong for equal widths
    with pytest.raises(TypeError, match=r"LinearCache .* got None$"):
        a.backward(None, y)
    with pytest.raises(ValueError, match=r"dy has shape \(2, 5, 2\), expected \(2, 5, 3\) \(the "
                                         r"shape of y from forward\)"):
        a.backward(cache, y[..., :2])  # was: a raw broadcast error
    dx, grads = a.backward(cache, y)
    assert tuple(dx.shape) == (2, 5, 8) and sorted(grads) == ["bias", "weight"]

    ids = asarray(np.array([[1, 2], [3, 0]]))
    e, f = xprnn.Embedding(10, 4, xp=xp, device=device), xprnn.Embedding(10, 4, xp=xp,
                                                                          device=device)
    y, cache = e.forward(ids)
    with pytest.raises(ValueError, match=r"cache was made by another layer"):
        f.backward(cache, y)  # same shapes: was silently accepted
    with pytest.raises(TypeError, match=r"EmbeddingCache .* got None$"):
        e.backward(None, y)
    with pytest.raises(TypeError, match=r"EmbeddingCache .* got LinearCache"):
        e.backward(a.forward(x)[1], y)
    with pytest.raises(ValueError, match=r"dy must have the shape of the forward output"):
        e.backward(cache, y[:1, ...])
    assert tuple(e.backward(cache, y)[1]["weight"].shape) == (10, 4)


def test_model_backward_checks_the_cache(xp, device):
    ids, lengths = np.array([[1, 2, 3], [4, 5, 0]]), [3, 2]
    a, b = (SequenceClassifier(10, 4, 4, 3, xp=xp, device=device, seed=s) for s in (0, 1))
    logits, cache = a.forward(ids, lengths)
    with pytest.raises(ValueError, match="cache was made by another model"):
        b.backward(cache, logits)
    with pytest.raises(TypeError, match=r"keep=False"):
        a.backward(a.forward(ids, lengths, keep=False)[1], logits)
    with pytest.raises(ValueError, match=r"dlogits has shape \(2, 2\), expected \(2, 3\)"):
        a.backward(cache, logits[:, :2])
    lm = LanguageModel(10, 4, 4, xp=xp, device=device)
    logits, _, cache = lm.forward(ids)
    with pytest.raises(ValueError, match=r"dlogits has shape \(2, 3\), expected \(2, 3, 10\)"):
        lm.backward(cache, logits[..., 0])
    assert sorted(lm.backward(cache, logits)) == sorted(lm.state_dict())


# -- case 8: determinism, memory estimate, streaming -----------------------------------------------


def test_checkpoint_bytes_are_deterministic(tmp_path):
    model = SequenceClassifier(30, 4, 6, 2, seed=3)
    model.meta = {"vocab": {"tokens": ["a"]}, "classes": ["x", "y"], "z": 1}
    files = [(save(model, tmp_path / str(i)) / WEIGHTS_NAME).read_bytes() for i in range(3)]
    assert files[0] == files[1] == files[2]  # was: the metadata order changed run to run
    n = int.from_bytes(files[0][:8], "little")
    header = json.loads(files[0][8:8 + n])
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    with safetensors.safe_open(tmp_path / "0" / WEIGHTS_NAME, framework="numpy") as f:
        got = {k: f.get_tensor(k) for k in f.keys()}
    want = {k: xprnn.backend.to_numpy(v) for k, v in model.state_dict().items()}
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_absurd_sizes_are_refused_before_allocating(tmp_path, capsys):
    csv = tmp_path / "d.csv"
    csv.write_text("review,sentiment\n" + "good film,pos\nbad film,neg\n" * 5)
    code, _, err = _run(capsys, "sentiment", "train", "--data", csv, "--hidden", "100000000",
                        "--out", tmp_path / "m")
    assert code == 2 and "the model would have 30,000,0" in err
    assert "more than the" in err and "use smaller --hidden" in err
    text = tmp_path / "t.txt"
    text.write_text("abc " * 100)
    code, _, err = _run(capsys, "lm", "train", "--text", text, "--level", "char", "--hidden",
                        "100000000", "--out", tmp_path / "lm")
    assert code == 2 and "the model would have" in err


def test_generate_streams(tmp_path, capsys, monkeypatch):
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat. " * 40)
    assert _run(capsys, "lm", "train", "--text", text, "--level", "char", "--hidden", "8",
                "--layers", "1", "--seq-len", "8", "--batch-size", "4", "--epochs", "1",
                "--no-progress", "--out", tmp_path / "lm")[0] == 0
    from xprnn.models import language

    real, printed = language.sample_next, []

    def sample(*args, **kw):
        printed.append(capsys.readouterr().out)  # what was printed before this draw
        return real(*args, **kw)

    monkeypatch.setattr(language, "sample_next", sample)
    code = main(["lm", "generate", "--model", str(tmp_path / "lm"), "--prompt", "the",
                 "--length", "30", "--seed", "1"])
    rest = capsys.readouterr().out
    assert code == 0 and len(printed) == 30
    assert printed[0] == "the" and all(len(p) == 1 for p in printed[1:])  # one char per draw
    assert len("".join(printed) + rest) == len("the") + 30 + 1
