"""Global-norm gradient clipping, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from xprnn.backend import to_numpy
from xprnn.training.clip import clip_grad_norm

from ._helpers import other_backend, rel_error


def _grads_np(scale=1.0, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return {
        "weight_ih_l0": (scale * rng.standard_normal((8, 3))).astype(dtype),
        "bias_ih_l0": (scale * rng.standard_normal(8)).astype(dtype),
        "h0": (scale * rng.standard_normal((2, 1, 4))).astype(dtype),
    }


def _norm_np(grads):
    return float(np.sqrt(sum(np.sum(np.asarray(g, np.float64) ** 2) for g in grads.values())))


def test_clips_like_numpy(xp, asarray):
    g_np = _grads_np(scale=10.0)
    total_np = _norm_np(g_np)
    assert total_np > 5.0
    clipped, total = clip_grad_norm({k: asarray(v) for k, v in g_np.items()}, 5.0)
    assert isinstance(total, float) and abs(total - total_np) < 1e-12 * total_np
    coef = 5.0 / (total_np + 1e-6)
    for k, v in g_np.items():
        assert rel_error(clipped[k], v * coef) < 1e-14
    assert abs(_norm_np({k: to_numpy(v) for k, v in clipped.items()}) - 5.0) < 1e-5


def test_float32_norm_after_clipping(xp, asarray):
    g_np = _grads_np(scale=1e3, dtype=np.float32)
    clipped, total = clip_grad_norm({k: asarray(v) for k, v in g_np.items()}, 1.0)
    assert abs(total - _norm_np(g_np)) < 1e-6 * total
    assert all(v.dtype == xp.float32 for v in clipped.values())
    assert abs(_norm_np({k: to_numpy(v) for k, v in clipped.items()}) - 1.0) < 1e-5


def test_below_threshold_unchanged(xp, asarray):
    g_np = _grads_np(scale=0.01)
    grads = {k: asarray(v) for k, v in g_np.items()}
    clipped, total = clip_grad_norm(grads, 1.0)
    assert abs(total - _norm_np(g_np)) < 1e-12 and total < 1.0
    assert clipped is not grads and all(clipped[k] is grads[k] for k in grads)


def test_inputs_not_modified_and_none_skipped(xp, asarray):
    g_np = _grads_np(scale=10.0)
    grads = {k: asarray(v) for k, v in g_np.items()}
    grads["frozen"] = None
    clipped, total = clip_grad_norm(grads, 0.5)
    assert clipped["frozen"] is None
    assert abs(total - _norm_np(g_np)) < 1e-12 * total
    for k, v in g_np.items():
        np.testing.assert_array_equal(to_numpy(grads[k]), v)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_norm_returned_as_is(xp, asarray, bad):
    g_np = _grads_np()
    g_np["bias_ih_l0"][3] = bad
    grads = {k: asarray(v) for k, v in g_np.items()}
    clipped, total = clip_grad_norm(grads, 1.0)
    assert np.isnan(total) if np.isnan(bad) else total == np.inf
    assert all(clipped[k] is grads[k] for k in grads)


def test_extremes(xp, asarray):
    # one huge and one tiny entry: the huge one sets the norm, and both scale by one factor
    g_np = {"a": np.array([1e150, 0.0]), "b": np.array([1e-150])}
    clipped, total = clip_grad_norm({k: asarray(v) for k, v in g_np.items()}, 1.0)
    assert total == pytest.approx(1e150, rel=1e-14)
    np.testing.assert_allclose(to_numpy(clipped["a"]), [1.0, 0.0], rtol=1e-14)
    np.testing.assert_allclose(to_numpy(clipped["b"]), [1e-300], rtol=1e-14)
    assert clip_grad_norm({}, 1.0) == ({}, 0.0)
    zeros = {"z": asarray(np.zeros(3))}
    assert clip_grad_norm(zeros, 1.0)[1] == 0.0


@pytest.mark.parametrize("max_norm", [0.0, -1.0, float("nan"), "1", None, True])
def test_bad_max_norm(xp, asarray, max_norm):
    with pytest.raises(ValueError, match="max_norm must be a positive number"):
        clip_grad_norm({"a": asarray(np.ones(2))}, max_norm)


def test_mixed_backends(xp, asarray):
    other = other_backend(xp)
    with pytest.raises(TypeError, match="different backends"):
        clip_grad_norm({"a": asarray(np.ones(2)), "b": other.asarray(np.ones(2))}, 1.0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("max_norm", [0.3, 100.0])
def test_matches_torch(xp, asarray, dtype, max_norm):
    torch = pytest.importorskip("torch")
    g_np = _grads_np(scale=3.0, seed=4, dtype=dtype)
    params = [torch.zeros(v.shape, dtype=getattr(torch, dtype)) for v in g_np.values()]
    for p, v in zip(params, g_np.values(), strict=True):
        p.grad = torch.from_numpy(v.copy())
    total_ref = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    clipped, total = clip_grad_norm({k: asarray(v) for k, v in g_np.items()}, max_norm)
    tol = 1e-6 if dtype == "float32" else 1e-14
    assert abs(total - total_ref) <= tol * total_ref
    for k, p in zip(g_np, params, strict=True):
        assert rel_error(clipped[k], p.grad) < tol
