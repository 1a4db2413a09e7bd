"""Linear, softmax, log_softmax, cross-entropy and MSE: values, gradients, extremes, errors."""

from __future__ import annotations

import numpy as np
import pytest

import xprnn
from xprnn.backend import to_numpy

from ._helpers import numeric_grad, rel_error


def test_linear_gradients(xp, device, asarray):
    lin = xprnn.Linear(3, 4, dtype="float64", xp=xp, device=device, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3))
    R = rng.standard_normal((2, 5, 4))
    y, cache = lin.forward(asarray(x))
    dx, grads = lin.backward(cache, asarray(R))

    def loss(xv):
        return float(np.sum(to_numpy(lin(asarray(xv))) * R))

    assert rel_error(dx, numeric_grad(loss, x)) < 1e-6
    for name in ("weight", "bias"):
        p = lin.params[name]

        def f(v, name=name, p=p):
            lin.params[name] = asarray(v)
            try:
                return loss(x)
            finally:
                lin.params[name] = p

        assert rel_error(grads[name], numeric_grad(f, to_numpy(p))) < 1e-6
    W, b = to_numpy(lin.params["weight"]), to_numpy(lin.params["bias"])
    np.testing.assert_allclose(to_numpy(y), x @ W.T + b, rtol=1e-12)


def test_linear_bad_width(xp, device, asarray):
    with pytest.raises(ValueError, match="in_features=3"):
        xprnn.Linear(3, 4, xp=xp, device=device)(asarray(np.ones((2, 5), np.float32)))


def test_softmax_extremes(xp, asarray):
    x = asarray(np.array([[1e4, 0.0, 0.0, 0.0], [-1e4, -1e4, 0.0, 1e4]]))
    p = to_numpy(xprnn.softmax(x))
    np.testing.assert_allclose(p, [[1, 0, 0, 0], [0, 0, 0, 1]], atol=1e-300)
    lp = to_numpy(xprnn.log_softmax(x))
    np.testing.assert_allclose(lp, [[0, -1e4, -1e4, -1e4], [-2e4, -2e4, -1e4, 0]])
    assert np.all(np.isfinite(lp))


def _ce_reference(logits, targets, mask):
    m = logits.max(axis=-1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))
    nll = -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    return (nll * mask).sum() / mask.sum()


def test_cross_entropy_value_and_gradient(xp, asarray):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((3, 4, 5)) * 3
    targets = rng.integers(0, 5, (3, 4))
    mask = (rng.random((3, 4)) > 0.3).astype(np.float64)
    mask[0, 0] = 1.0
    loss, dlogits = xprnn.softmax_cross_entropy(asarray(logits), asarray(targets), asarray(mask))
    assert abs(float(loss) - _ce_reference(logits, targets, mask)) < 1e-12
    num = numeric_grad(lambda v: _ce_reference(v, targets, mask), logits)
    assert rel_error(dlogits, num) < 1e-6


def test_cross_entropy_stable_for_huge_logits(xp, asarray):
    logits = asarray(np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]]))
    loss, d = xprnn.softmax_cross_entropy(logits, asarray(np.array([0, 0])))
    # row 1 picks the right class (loss 0), row 2 the wrong one (loss 2e4): mean 1e4
    assert float(loss) == pytest.approx(1e4)
    assert np.all(np.isfinite(to_numpy(d)))


def test_cross_entropy_matches_torch(xp, asarray):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((6, 7))
    targets = rng.integers(0, 7, 6)
    t = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(t, torch.tensor(targets))
    ref.backward()
    loss, d = xprnn.softmax_cross_entropy(asarray(logits), asarray(targets))
    assert abs(float(loss) - ref.item()) < 1e-12
    np.testing.assert_allclose(to_numpy(d), t.grad.numpy(), atol=1e-14)


def test_cross_entropy_errors(xp, asarray):
    logits = asarray(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\).*0\.\.3"):
        xprnn.softmax_cross_entropy(logits, asarray(np.array([0, 3])))
    with pytest.raises(ValueError, match=r"-1\.\.1"):
        xprnn.softmax_cross_entropy(logits, asarray(np.array([-1, 1])))
    with pytest.raises(TypeError, match="integer class ids"):
        xprnn.softmax_cross_entropy(logits, asarray(np.array([0.0, 1.0])))
    with pytest.raises(ValueError, match="expected logits.shape"):
        xprnn.softmax_cross_entropy(logits, asarray(np.array([0, 1, 2])))


def test_mse(xp, asarray):
    rng = np.random.default_rng(3)
    p, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    loss, d = xprnn.mse_loss(asarray(p), asarray(t))
    assert float(loss) == pytest.approx(np.mean((p - t) ** 2), rel=1e-12)
    assert rel_error(d, numeric_grad(lambda v: np.mean((v - t) ** 2), p)) < 1e-6
    with pytest.raises(ValueError, match="shape"):
        xprnn.mse_loss(asarray(p), asarray(t[:2]))
