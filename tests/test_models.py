"""SequenceClassifier and LanguageModel: full backward against finite differences, behaviour,
and two learning tests that need memory."""

from __future__ import annotations

import numpy as np
import pytest

from xprnn.backend import to_numpy
from xprnn.backend.random import Generator
from xprnn.models import LanguageModel, SequenceClassifier
from xprnn.optim import Adam
from xprnn.training import evaluate, fit

from ._helpers import numeric_grad, rel_error


def _check_all_grads(model, loss_of, grads, asarray):
    """Compare every parameter's gradient with central finite differences of ``loss_of()``.

    Dropout masks are replayed by resetting every generator to its seed before each evaluation.
    """
    seeds = [(m, m.rng.seed) for m in model.modules() if hasattr(m, "rng")]

    def loss():
        for m, s in seeds:
            m.rng = Generator(s)
        return float(loss_of())

    for name, p in model.state_dict().items():
        def f(v, name=name, p=p):
            model.update(dict(model.state_dict(), **{name: asarray(v)}))
            try:
                return loss()
            finally:
                model.update(dict(model.state_dict(), **{name: p}))
        # eps 1e-4: these gradients are ~1e-5, so a smaller step drowns in float64 round-off
        assert rel_error(grads[name], numeric_grad(f, to_numpy(p), eps=1e-4)) < 1e-6, name


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("cell,bidir", [("lstm", True), ("gru", False), ("rnn", True)])
def test_classifier_gradients(xp, device, asarray, pooling, cell, bidir):
    model = SequenceClassifier(7, 3, 2, 3, cell=cell, num_layers=2, bidirectional=bidir,
                               dropout=0.3, pooling=pooling, dtype="float64", xp=xp,
                               device=device, seed=1)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 7, (3, 4))
    lengths = np.array([4, 2, 3])
    ids[1, 2:] = 0
    labels = np.array([0, 2, 1])
    for m in model.modules():
        if hasattr(m, "rng"):
            m.rng = Generator(m.rng.seed)
    _, grads, _ = model.loss(ids, lengths, labels)
    _check_all_grads(model, lambda: model.loss(ids, lengths, labels)[0], grads, asarray)


@pytest.mark.parametrize("tie", [False, True])
def test_language_model_gradients(xp, device, asarray, tie):
    model = LanguageModel(6, 4, 4, cell="lstm", num_layers=2, dropout=0.2, tie_weights=tie,
                          dtype="float64", xp=xp, device=device, seed=2)
    rng = np.random.default_rng(1)
    inputs, targets = rng.integers(0, 6, (2, 5)), rng.integers(0, 6, (2, 5))
    state0 = tuple(asarray(rng.standard_normal((2, 2, 4)) * 0.3) for _ in range(2))
    for m in model.modules():
        if hasattr(m, "rng"):
            m.rng = Generator(m.rng.seed)
    _, grads, _ = model.loss(inputs, targets, state0)
    _check_all_grads(model, lambda: model.loss(inputs, targets, state0)[0], grads, asarray)
    assert ("fc.weight" in grads) != tie


def test_padding_never_leaks(xp, device):
    """Changing the tokens behind a row's length changes nothing, for every pooling."""
    for pooling in ("last", "mean", "max"):
        model = SequenceClassifier(9, 4, 5, 2, bidirectional=True, pooling=pooling,
                                   dtype="float64", xp=xp, device=device, seed=0).eval()
        ids = np.array([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]])
        junk = ids.copy()
        junk[0, 3:] = [7, 8]
        a = to_numpy(model.forward(ids, [3, 5])[0])
        b = to_numpy(model.forward(junk, [3, 5])[0])
        np.testing.assert_array_equal(a, b)
        # and a row alone, unpadded, gives the same logits
        c = to_numpy(model.forward(ids[:1, :3], [3])[0])
        np.testing.assert_allclose(a[:1], c, rtol=1e-12, atol=1e-12)


def test_generate(xp, device):
    model = LanguageModel(5, 4, 8, xp=xp, device=device, seed=0)
    a = model.generate([1, 2], 12, seed=3)
    assert a == model.generate([1, 2], 12, seed=3) and len(a) == 12
    assert all(0 <= i < 5 for i in a)
    g = model.generate([1], 6, greedy=True)
    assert g == model.generate([1], 6, greedy=True, seed=9)  # greedy ignores the seed
    assert set(model.generate([1], 30, top_k=1, seed=1)) <= set(range(5))
    assert model.generate([1], 8, top_k=1, seed=1) == model.generate([1], 8, greedy=True)
    with pytest.raises(ValueError, match="temperature"):
        model.generate([1], 3, temperature=0)
    with pytest.raises(ValueError, match="prompt_ids"):
        model.generate([], 3)


def test_bad_ids_raise(xp, device):
    model = SequenceClassifier(5, 2, 3, 2, xp=xp, device=device)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        model.forward(np.array([[1, 5]]), [2])
    with pytest.raises(ValueError, match="batch, time"):
        model.forward(np.array([1, 2]), [2])


def _first_token_task(rng, n, distractors=30):
    """Label = which of two tokens came first, followed by random distractor tokens."""
    T = distractors + 1
    ids = rng.integers(3, 10, (n, T))
    y = rng.integers(0, 2, n)
    ids[:, 0] = 1 + y
    return ids, np.full(n, T), y


class _Fresh:
    """A new random training set every epoch, so the only way to learn is to remember."""

    def __init__(self, seed, n_batches=16, batch_size=32):
        self.rng, self.n, self.bs = np.random.default_rng(seed), n_batches, batch_size

    def __len__(self):
        return self.n

    def __iter__(self):
        return (_first_token_task(self.rng, self.bs) for _ in range(self.n))


def _needs_fast_backend(backend):
    if backend not in ("numpy", "torch"):
        pytest.skip("learning tests run on numpy and torch only (they take hundreds of steps)")


def test_classifier_learns_to_remember_the_first_token(xp, device, backend):
    _needs_fast_backend(backend)
    model = SequenceClassifier(10, 8, 16, 2, cell="gru", xp=xp, device=device, seed=0)
    test = [_first_token_task(np.random.default_rng(99), 512)]
    assert evaluate(model, test)["accuracy"] < 0.6
    opt, train = Adam(lr=0.02), _Fresh(0)
    for _ in range(40):
        fit(model, train, opt, 1, clip=1.0, progress=False, log=None)
        if evaluate(model, test)["accuracy"] == 1.0:
            break
    assert evaluate(model, test)["accuracy"] == 1.0


def test_language_model_memorises_a_text(xp, device, backend):
    _needs_fast_backend(backend)
    from xprnn.text.batching import lm_batches

    text = "the quick brown fox jumps over the lazy dog. " * 4
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text])
    model = LanguageModel(len(chars), 16, 64, xp=xp, device=device, seed=0)

    class Chunks:
        def __iter__(self):
            return iter(lm_batches(ids, 4, 20))

        def __len__(self):
            return 3

    hist = fit(model, Chunks(), Adam(lr=1e-2), 60, valid=Chunks(), progress=False, log=None)
    assert hist["valid_loss"][-1] < 0.05
    out = model.generate([chars.index("t")], 43, greedy=True)
    assert "".join(chars[i] for i in out) == text[1:44]
