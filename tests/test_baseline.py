"""The bag-of-words baseline: n-gram tables, ``BagOfNgrams`` against a dense logistic regression
written here from its definition and against float64 finite differences on every backend, and the
baseline line of ``xprnn sentiment train``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests._helpers import numeric_grad, rel_error
from xprnn.backend import to_numpy
from xprnn.models.bow import BagOfNgrams, fit_baseline
from xprnn.text.batching import batches, pad_batch
from xprnn.text.ngrams import NgramTable, ngrams

# -- n-grams -------------------------------------------------------------------------------------


def test_ngrams_are_distinct_uni_and_bigrams():
    assert ngrams(["a", "b", "a", "b"]) == {"a", "b", "a b", "b a"}
    assert ngrams(["a", "b", "c"], n=3) == {"a", "b", "c", "a b", "b c", "a b c"}
    assert ngrams([], n=2) == set()


def test_table_counts_documents_and_ignores_text_order():
    docs = [["good", "good", "good"], ["not", "good"], ["bad"], ["not", "good", "film"]]
    table = NgramTable.build(docs, min_freq=2)
    # "good" is in 3 texts, "not" and "not good" in 2; "bad" (1 text) and "good good" (1) drop
    assert table.features == ["good", "not", "not good"]
    assert NgramTable.build(docs[::-1], min_freq=2).features == table.features
    assert NgramTable.build(docs, min_freq=1, max_size=2).features == ["good", "not"]
    assert len(table) == 4  # padding id 0 + 3 features
    assert table.encode(["not", "good", "not", "good"]).tolist() == [1, 2, 3]
    assert table.encode(["unseen"]).tolist() == [0]
    with pytest.raises(ValueError, match="min_freq"):
        NgramTable.build(docs, min_freq=0)


# -- the model -----------------------------------------------------------------------------------


def _batch(rng, F, B=5):
    rows = [np.unique(rng.integers(1, F, size=int(rng.integers(1, 7)))) for _ in range(B)]
    rows[0] = np.array([0])  # a text with no known n-gram: padding only
    ids, lengths = pad_batch(rows)
    return rows, ids, lengths


def _dense_logits(rows, W, b):
    """Logistic regression written from its definition: a binary n-gram vector per text,
    scaled to unit length, times W, plus b."""
    X = np.zeros((len(rows), W.shape[0]))
    for i, r in enumerate(rows):
        known = r[r != 0]
        X[i, known] = 1.0 / np.sqrt(max(known.size, 1))
    return X @ W + b


def test_logits_equal_the_dense_logistic_regression(xp, device, asarray):
    rng = np.random.default_rng(0)
    F, C = 12, 3
    model = BagOfNgrams(F, C, xp=xp, device=device, dtype="float64")
    W, b = rng.standard_normal((F, C)), rng.standard_normal(C)
    W[0] = 0.0  # padding
    model.update({"weight": asarray(W, "float64"), "bias": asarray(b, "float64")})
    rows, ids, lengths = _batch(rng, F)
    logits, _ = model.forward(ids, np.array([max((r != 0).sum(), 1) for r in rows]))
    assert rel_error(logits, _dense_logits(rows, W, b)) < 1e-12


def test_gradients_match_finite_differences(xp, device, asarray):
    rng = np.random.default_rng(1)
    F, C = 10, 3
    model = BagOfNgrams(F, C, xp=xp, device=device, dtype="float64")
    W0, b0 = rng.standard_normal((F, C)), rng.standard_normal(C)
    W0[0] = 0.0
    rows, ids, lengths = _batch(rng, F)
    labels = rng.integers(0, C, size=len(rows))

    def loss_at(W, b):
        model.update({"weight": asarray(W, "float64"), "bias": asarray(b, "float64")})
        loss, grads, _ = model.loss(ids, lengths, labels)
        return float(loss), grads

    _, grads = loss_at(W0, b0)
    dW = numeric_grad(lambda W: loss_at(W, b0)[0], W0)
    db = numeric_grad(lambda b: loss_at(W0, b)[0], b0)
    dW[0] = 0.0  # the padding row gets no gradient by design
    assert float(np.max(np.abs(to_numpy(grads["weight"])[0]))) == 0.0
    assert rel_error(grads["weight"], dW) < 1e-7
    assert rel_error(grads["bias"], db) < 1e-7


def test_bad_ids_lengths_and_caches_are_clear_errors(xp, device):
    a = BagOfNgrams(5, 2, xp=xp, device=device)
    b = BagOfNgrams(5, 2, xp=xp, device=device)
    logits, cache = a.forward(np.array([[1, 2]]), np.array([2]))
    with pytest.raises(ValueError, match="another model"):
        b.backward(cache, logits)
    with pytest.raises(TypeError, match="keep=True"):
        a.backward(None, logits)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 5\)"):
        a.forward(np.array([[1, 5]]), np.array([2]))
    with pytest.raises(ValueError, match="lengths must have shape"):
        a.forward(np.array([[1, 2]]), np.array([2, 2]))


def test_fit_baseline_learns_negation_that_unigrams_cannot(xp, device):
    """"not good" is negative, "good" positive: only the bigram separates them."""
    rng = np.random.default_rng(2)
    filler = ["the", "film", "was", "a", "story", "plot"]
    docs, y = [], []
    for i in range(400):
        words = list(rng.choice(filler, size=4))
        neg = i % 2 == 0
        words[int(rng.integers(0, 3))] = "good"
        if neg:
            words.insert(words.index("good"), "not")
        else:
            words.insert(int(rng.integers(0, len(words) + 1)), "not")  # "not" elsewhere too
            if " ".join(words).count("not good"):
                words.remove("not")
        docs.append(words)
        y.append(int(not neg))
    y = np.array(y)
    for n, expected in ((1, lambda a: a < 0.8), (2, lambda a: a > 0.97)):
        table = NgramTable.build(docs[:300], n=n)
        enc = [table.encode(d) for d in docs]
        model, rec = fit_baseline(batches(enc[:300], y[:300], 32, seed=0),
                                  batches(enc[300:], y[300:], 100, shuffle=False),
                                  len(table), 2, xp=xp, device=device)
        assert expected(rec["valid_accuracy"]), (n, rec)


# -- the command line ----------------------------------------------------------------------------


def _csv(path, rows):
    path.write_text("review,sentiment\n" + "".join(f"{t},{lab}\n" for t, lab in rows))
    return str(path)


def test_sentiment_train_reports_the_baseline(tmp_path, capsys, backend):
    if backend != "numpy":
        pytest.skip("backend-independent; runs under --backend numpy")
    from xprnn.cli import main

    rng = np.random.default_rng(3)
    rows = [(" ".join(rng.choice(["the", "film", "plot"], 4)) + (" great" if i % 2 else " dull"),
             "pos" if i % 2 else "neg") for i in range(120)]
    train, test = _csv(tmp_path / "a.csv", rows[:90]), _csv(tmp_path / "b.csv", rows[90:])
    argv = ["sentiment", "train", "--data", train, "--test", test, "--embedding-dim", "4",
            "--hidden", "4", "--epochs", "1", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "m1")]) == 0
    out = capsys.readouterr().out
    assert "baseline: logistic regression on" in out
    assert "the bag-of-words baseline's test accuracy 1.0000" in out
    assert main([*argv, "--out", str(tmp_path / "m2"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["baseline"]["test_accuracy"] == 1.0 and r["baseline"]["test_size"] == 30
    assert r["baseline"]["features"] >= 4
    assert main([*argv, "--out", str(tmp_path / "m3"), "--json", "--no-baseline",
                 "--valid-fraction", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["baseline"] is None
    assert main([*argv, "--out", str(tmp_path / "m4"), "--json", "--valid-fraction", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["baseline"]["test_accuracy"] == 1.0


def test_a_failing_baseline_does_not_stop_the_model(tmp_path, capsys, backend, monkeypatch):
    if backend != "numpy":
        pytest.skip("backend-independent; runs under --backend numpy")
    from xprnn.cli import _baseline, main

    def broken(*a, **kw):
        raise ValueError("no n-gram is in two texts")

    monkeypatch.setattr(_baseline, "fit_and_test", broken)
    rows = [("great film", "pos"), ("dull film", "neg")] * 6
    code = main(["sentiment", "train", "--data", _csv(tmp_path / "a.csv", rows), "--hidden",
                 "4", "--embedding-dim", "4", "--epochs", "1", "--no-progress",
                 "--out", str(tmp_path / "m")])
    out = capsys.readouterr().out
    assert code == 0 and "baseline skipped: no n-gram is in two texts" in out
    assert "model saved to" in out and "bag-of-words baseline's" not in out
