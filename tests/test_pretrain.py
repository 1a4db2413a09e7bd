"""Fine-tuning a language model into a classifier: per-parameter learning rates
(``Optimizer.lr_scale``, ``optim.layerwise``), ``lm train --tokenizer`` and
``sentiment train --init-from`` with discriminative rates and gradual unfreezing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xprnn import optim
from xprnn.backend import to_numpy
from xprnn.checkpoint import load
from xprnn.cli import main
from xprnn.models import SequenceClassifier


@pytest.fixture(autouse=True)
def _once(request, backend):
    if backend != "numpy" and "xp" not in request.fixturenames:
        pytest.skip("backend-independent; runs under --backend numpy")


# -- per-parameter learning rates ------------------------------------------------------------


def test_layerwise_rates_and_unfreezing():
    scale = optim.layerwise([["fc"], ["top"], ["emb"]], factor=2.0, unfreeze_every=3)
    assert [scale("fc", s) for s in (0, 3, 6)] == [1.0, 1.0, 1.0]
    assert [scale("top", s) for s in (0, 2, 3, 9)] == [0.0, 0.0, 0.5, 0.5]
    assert [scale("emb", s) for s in (5, 6)] == [0.0, 0.25]
    assert scale("unknown", 0) == 1.0
    assert optim.layerwise([["a"], ["b"]])("b", 0) == 1.0
    with pytest.raises(ValueError, match="factor"):
        optim.layerwise([["a"]], factor=0.5)
    with pytest.raises(ValueError, match="unfreeze_every"):
        optim.layerwise([["a"]], unfreeze_every=0)


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam])
def test_lr_scale_scales_each_parameter_and_freezes_at_zero(xp, device, asarray, cls):
    p = {"a": asarray(np.array([1.0, 2.0])), "b": asarray(np.array([3.0])),
         "c": asarray(np.array([-1.0]))}
    g = {"a": asarray(np.array([0.5, -1.0])), "b": asarray(np.array([2.0])),
         "c": asarray(np.array([4.0]))}
    scaled, plain = cls(lr=0.1), cls(lr=0.025)
    scaled.lr_scale = lambda name, step: {"a": 1.0, "b": 0.25, "c": 0.0}[name]
    new = scaled.step(p, g)
    ref = plain.step(p, g)  # "b" at lr 0.1 * 0.25 must equal a plain step at lr 0.025
    assert np.allclose(to_numpy(new["b"]), to_numpy(ref["b"]), rtol=1e-12, atol=0)
    assert np.array_equal(to_numpy(new["c"]), [-1.0]) and "c" not in scaled.state
    assert not np.allclose(to_numpy(new["a"]), to_numpy(ref["a"]))  # "a" took the full rate


def test_classifier_layer_groups_go_top_down():
    m = SequenceClassifier(10, 4, 5, 2, cell="lstm", num_layers=2, bidirectional=True)
    groups = m.layer_groups()
    assert groups[0] == ["fc.weight", "fc.bias"] and groups[-1] == ["embedding.weight"]
    assert all(n.split("_l")[1].startswith("1") for n in groups[1])
    assert all(n.split("_l")[1].startswith("0") for n in groups[2])
    assert sorted(n for grp in groups for n in grp) == sorted(m.state_dict())


# -- the command line ------------------------------------------------------------------------

WORDS = ["the", "film", "was", "a", "great", "dull", "plot", "actor", "story", "and", "café",
         "21st", "it"]


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    text = tmp_path / "unlabelled.txt"
    text.write_text("\n".join(" ".join(rng.choice(WORDS, 12)) + "." for _ in range(150)),
                    encoding="utf-8")
    rows = ["review,sentiment"]
    for i in range(80):
        words = list(rng.choice(WORDS[:4] + WORDS[6:], 6)) + ["great" if i % 2 else "dull"]
        rows.append(f"{' '.join(words)},{'pos' if i % 2 else 'neg'}")
    data = tmp_path / "data.csv"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(text), str(data)


def _lm(tmp_path, text, *extra, name="lm"):
    out = tmp_path / name
    assert main(["lm", "train", "--text", text, "--level", "word", "--cell", "gru", "--hidden",
                 "8", "--embedding-dim", "6", "--layers", "2", "--seq-len", "8", "--batch-size",
                 "4", "--epochs", "1", "--no-progress", "--out", str(out), *extra]) == 0
    return out


def _train(tmp_path, data, lm, *extra, name="clf"):
    out = tmp_path / name
    code = main(["sentiment", "train", "--data", data, "--init-from", str(lm), "--epochs", "1",
                 "--no-progress", "--no-baseline", "--json", "--out", str(out), *extra])
    return code, out


def _weights(path):
    return {k: np.array(to_numpy(v)) for k, v in load(path).state_dict().items()}


def test_init_from_copies_the_language_model_and_gradual_unfreezing_keeps_it(tmp_path, files,
                                                                           capsys):
    text, data = files
    lm = _lm(tmp_path, text, "--tokenizer", "unicode")
    meta = json.loads((lm / "config.json").read_text())["meta"]
    assert meta["tokenizer"]["rule"] == "unicode"
    assert meta["vocab"]["tokens"][:2] == ["<pad>", "<unk>"]
    capsys.readouterr()
    # epoch 1 of gradual unfreezing trains the output layer only: everything else is the LM's
    code, out = _train(tmp_path, data, lm, "--unfreeze", "gradual")
    assert code == 0, capsys.readouterr().err
    r = json.loads(capsys.readouterr().out)
    assert r["vocab_size"] == len(meta["vocab"]["tokens"])
    W, L = _weights(out), _weights(lm)
    E = L["embedding.weight"].copy()
    E[0] = 0.0  # the classifier's padding row
    assert np.array_equal(W["embedding.weight"], E)
    for k in L:
        if k.startswith("rnn."):
            assert np.array_equal(W[k], L[k]), k
    assert W["fc.weight"].shape == (2, 8)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["hidden_size"] == 8 and cfg["config"]["num_layers"] == 2
    assert cfg["meta"]["tokenizer"]["rule"] == "unicode"
    # without freezing every layer moves, the lower ones by less with --discriminative
    code, out = _train(tmp_path, data, lm, "--discriminative", "2.6", name="clf2")
    assert code == 0
    W = _weights(out)
    assert not np.array_equal(W["rnn.weight_hh_l0"], L["rnn.weight_hh_l0"])
    assert not np.array_equal(W["embedding.weight"][1:], L["embedding.weight"][1:])


@pytest.mark.parametrize("lm_args, message", [
    (("--tokenizer", "whitespace"), "train it with --level word --tokenizer unicode"),
    (None, "expected a 'lm' model"),
])
def test_init_from_refuses_models_whose_words_differ(tmp_path, files, capsys, lm_args,
                                                     message):
    text, data = files
    if lm_args is None:  # a classifier is not a language model
        assert main(["sentiment", "train", "--data", data, "--epochs", "1", "--no-progress",
                     "--no-baseline", "--hidden", "4", "--embedding-dim", "4",
                     "--out", str(tmp_path / "notlm")]) == 0
        lm = tmp_path / "notlm"
    else:
        lm = _lm(tmp_path, text, *lm_args)
    capsys.readouterr()
    code, _ = _train(tmp_path, data, lm)
    assert code == 2
    err = capsys.readouterr().err
    assert "--init-from" in err and message in err and "Traceback" not in err


def test_init_from_errors(tmp_path, files, capsys):
    text, data = files
    code, _ = _train(tmp_path, data, tmp_path / "nowhere")
    assert code == 2 and "no such directory" in capsys.readouterr().err
    lm = _lm(tmp_path, text, "--tokenizer", "ascii")
    capsys.readouterr()
    code, _ = _train(tmp_path, data, lm, "--stopwords", "english")
    assert code == 2 and "--stopwords" in capsys.readouterr().err
    code = main(["lm", "train", "--text", text, "--level", "char", "--tokenizer", "unicode",
                 "--out", str(tmp_path / "c")])
    assert code == 2 and "--level word" in capsys.readouterr().err
    code, _ = _train(tmp_path, data, lm, "--discriminative", "0.5")
    assert code == 2 and "--discriminative" in capsys.readouterr().err
