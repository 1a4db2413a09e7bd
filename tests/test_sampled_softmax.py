"""Sampled softmax (``xprnn.nn.sampled_softmax``): equal to the full softmax when every class is
a candidate once, gradients against float64 finite differences on every backend, the
log-uniform proposal against its formula, and a word-level language model that learns with it
(``LanguageModel.softmax_samples``, ``xprnn lm train --sampled-softmax``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests._helpers import numeric_grad, rel_error
from xprnn.backend import Generator, to_numpy
from xprnn.nn import linear_backward, softmax_cross_entropy
from xprnn.nn.sampled_softmax import (
    log_uniform_log_count,
    log_uniform_sample,
    sampled_softmax_cross_entropy,
)


def _problem(seed, N=7, H=5, V=9):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((N, H)), rng.standard_normal((V, H)), rng.standard_normal(V),
            rng.integers(0, V, size=N))


def test_every_class_once_without_correction_is_the_full_softmax(xp, device, asarray):
    h, W, b, t = _problem(0)
    V = W.shape[0]
    zeros_t, zeros_s = np.zeros(t.shape[0]), np.zeros(V)
    loss, dh, dW, db = sampled_softmax_cross_entropy(
        asarray(h, "float64"), asarray(W, "float64"), asarray(b, "float64"), asarray(t),
        asarray(np.arange(V)), asarray(zeros_t, "float64"), asarray(zeros_s, "float64"))
    # the full softmax, from the library's own (separately tested) loss and linear layer
    h_, W_ = asarray(h, "float64"), asarray(W, "float64")
    logits = h_ @ xp.matrix_transpose(W_) + asarray(b, "float64")
    want_loss, dlogits = softmax_cross_entropy(logits, asarray(t))
    want_dh, want_dW, want_db = linear_backward(dlogits, h_, W_, True, xp=xp)
    assert abs(float(loss) - float(want_loss)) < 1e-12
    for got, want in ((dh, want_dh), (dW, want_dW), (db, want_db)):
        assert rel_error(got, want) < 1e-12


def test_gradients_match_finite_differences(xp, device, asarray):
    h, W, b, t = _problem(1)
    V = W.shape[0]
    rng = np.random.default_rng(2)
    sampled = np.concatenate([rng.integers(0, V, size=6), t[:2]])  # repeats and target hits
    lc_t, lc_s = rng.standard_normal(t.shape[0]), rng.standard_normal(sampled.shape[0])
    fixed = [asarray(t), asarray(sampled), asarray(lc_t, "float64"), asarray(lc_s, "float64")]

    def loss_of(h_, W_, b_):
        return sampled_softmax_cross_entropy(asarray(h_, "float64"), asarray(W_, "float64"),
                                             asarray(b_, "float64"), *fixed)

    _, dh, dW, db = loss_of(h, W, b)
    assert rel_error(dh, numeric_grad(lambda x: float(loss_of(x, W, b)[0]), h)) < 1e-7
    assert rel_error(dW, numeric_grad(lambda x: float(loss_of(h, x, b)[0]), W)) < 1e-7
    assert rel_error(db, numeric_grad(lambda x: float(loss_of(h, W, x)[0]), b)) < 1e-7
    # rows that are neither a target nor sampled get no gradient
    untouched = sorted(set(range(V)) - set(t.tolist()) - set(sampled.tolist()))
    assert untouched and not np.any(to_numpy(dW)[untouched])


def test_no_bias_and_bad_shapes(xp, device, asarray):
    h, W, _, t = _problem(3)
    args = [asarray(h, "float64"), asarray(W, "float64"), None, asarray(t), asarray([0, 1]),
            asarray(np.zeros(t.shape[0]), "float64"), asarray(np.zeros(2), "float64")]
    loss, dh, dW, db = sampled_softmax_cross_entropy(*args)
    assert db is None and tuple(dh.shape) == h.shape and tuple(dW.shape) == W.shape
    args[3] = asarray(t[:3])
    with pytest.raises(ValueError, match=r"targets must have shape \(7,\)"):
        sampled_softmax_cross_entropy(*args)


def test_the_log_uniform_proposal():
    V, S = 50, 400_000
    ids = log_uniform_sample(np.random.default_rng(0).random(S), V)
    k = np.arange(V)
    q = np.log((k + 2) / (k + 1)) / np.log(V + 1)  # the formula, written out
    assert ids.min() >= 0 and ids.max() < V and abs(q.sum() - 1) < 1e-12
    assert np.max(np.abs(np.bincount(ids, minlength=V) / S - q)) < 3e-3
    got = np.exp(log_uniform_log_count(k, V, 64, np.float64, xp=np))
    assert np.allclose(got, 64 * q, rtol=1e-12)
    # log1p keeps float32 accurate for large ids (30,000 words)
    big = np.arange(29_000, 30_000)
    want = np.log(64 * np.log1p(1 / (big + 1.0)) / np.log(30_001))
    assert np.max(np.abs(log_uniform_log_count(big, 30_000, 64, np.float32, xp=np) - want)) < 1e-5


# -- the language model --------------------------------------------------------------------------

TEXT = ("the cat sat on the mat . the dog sat on the log . a cat and a dog sat on a mat . "
        * 40)


def _lm_data():
    from xprnn.text import Vocabulary
    from xprnn.text.batching import lm_batches

    words = TEXT.split()
    vocab = Vocabulary.build([words], min_freq=1)
    ids = np.array(vocab.encode(words), dtype=np.int64)
    return vocab, list(lm_batches(ids, 4, 12))


def test_a_language_model_learns_with_a_sampled_softmax():
    from xprnn.models import LanguageModel
    from xprnn.optim import Adam
    from xprnn.training import evaluate, fit

    vocab, chunks = _lm_data()
    model = LanguageModel(len(vocab), 16, 16, cell="gru", seed=0)
    before = evaluate(model, chunks)["loss"]  # evaluation: the full softmax
    model.softmax_samples = 4
    fit(model, chunks, Adam(lr=1e-2), 8, progress=False, log=None)
    after = evaluate(model, chunks)["loss"]
    assert before > math.log(len(vocab)) - 0.3 and after < 0.5 * before
    # the draws come from the model's generator, whose saved state holds their position
    assert any(k.startswith("numpy|") for k in model.rng.get_state()["streams"])
    with pytest.raises(ValueError, match=rf"softmax_samples must lie in \[1, {len(vocab)}\)"):
        model.softmax_samples = len(vocab)
        model.loss(*chunks[0])


def test_resumed_draws_continue_the_same_candidates():
    from xprnn.nn.sampled_softmax import draw

    g = Generator(5)
    first = [to_numpy(draw(100, 8, g, np.float32, xp=np, device="cpu")[0]) for _ in range(2)]
    g2 = Generator(5)
    to_numpy(draw(100, 8, g2, np.float32, xp=np, device="cpu")[0])
    g3 = Generator(0).set_state(g2.get_state())
    assert np.array_equal(to_numpy(draw(100, 8, g3, np.float32, xp=np, device="cpu")[0]),
                          first[1])


def test_lm_train_with_a_sampled_softmax(tmp_path, capsys, backend):
    from xprnn.cli import main

    if backend != "numpy":
        pytest.skip("the command line on NumPy: runs under --backend numpy")
    text = tmp_path / "text.txt"
    text.write_text(TEXT, encoding="utf-8")
    argv = ["lm", "train", "--text", str(text), "--level", "word", "--hidden", "16",
            "--embedding-dim", "16", "--seq-len", "12", "--batch-size", "4", "--epochs", "3",
            "--no-progress", "--json", "--cell", "gru"]
    assert main([*argv, "--out", str(tmp_path / "s"), "--sampled-softmax", "4"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["valid_loss"] < math.log(r["vocab_size"])  # the full softmax's, on held-out text
    assert main([*argv, "--out", str(tmp_path / "x"), "--sampled-softmax", "500"]) == 2
    assert "--sampled-softmax 500: must be below the vocabulary size" in capsys.readouterr().err
