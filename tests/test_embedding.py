"""Scatter-add (``index_add``) and the ``Embedding`` layer, on every backend."""

from __future__ import annotations

import time

import numpy as np
import pytest

from xprnn.backend import backend_name, to_numpy
from xprnn.backend.scatter import index_add
from xprnn.nn.embedding import Embedding, embedding

from ._helpers import numeric_grad, other_backend, rel_error


def _onehot_sum(num_rows, idx, values):
    """Reference: one-hot(idx)^T @ values in float64."""
    onehot = (np.asarray(idx)[:, None] == np.arange(num_rows)[None, :]).astype(np.float64)
    return onehot.T @ np.asarray(values, dtype=np.float64)


# -- index_add ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_index_add_matches_onehot_with_repeats(xp, asarray, dtype):
    rng = np.random.default_rng(0)
    idx = np.array([3, 0, 3, 3, 5, 0, 9, 3])  # repeats, gaps (1, 2, 4, 6-8, 10) and both ends
    vals = rng.standard_normal((idx.size, 4)).astype(dtype)
    out = index_add(11, asarray(idx), asarray(vals), xp=xp)
    assert tuple(out.shape) == (11, 4) and out.dtype == getattr(xp, dtype)
    tol = 1e-6 if dtype == "float32" else 1e-14
    assert rel_error(out, _onehot_sum(11, idx, vals)) < tol
    assert np.all(to_numpy(out)[[1, 2, 4, 6, 7, 8, 10]] == 0.0)  # untouched rows exactly zero


def test_index_add_random_against_add_at(xp, asarray):
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 30, size=500)
    vals = rng.standard_normal((500, 7))
    ref = np.zeros((40, 7))
    np.add.at(ref, idx, vals)
    assert rel_error(index_add(40, asarray(idx), asarray(vals), xp=xp), ref) < 1e-13


@pytest.mark.parametrize("n", [1, 62, 63, 64, 65, 200])
def test_index_add_across_the_running_sum_blocks(xp, asarray, n):
    # the running sum is taken in blocks of 64 rows behind one zero row: sizes around the block
    # edges, with segments that straddle them (a few ids, so long segments)
    rng = np.random.default_rng(n)
    idx = rng.integers(0, 4, size=n)
    vals = rng.standard_normal((n, 3))
    ref = np.zeros((6, 3))
    np.add.at(ref, idx, vals)
    assert rel_error(index_add(6, asarray(idx), asarray(vals), xp=xp), ref) < 1e-13


def test_index_add_empty(xp, asarray):
    out = index_add(5, asarray(np.zeros(0, dtype=np.int64)), asarray(np.zeros((0, 3))), xp=xp)
    np.testing.assert_array_equal(to_numpy(out), np.zeros((5, 3)))


def test_index_add_float32_accuracy_many_repeats(xp, asarray):
    # 1e5 float32 values on 5 ids with a large common offset: a float32 running sum would lose
    # most digits of the per-row sums; the float64 accumulation keeps float32 rounding only.
    rng = np.random.default_rng(2)
    n = 100_000
    idx = rng.integers(0, 5, size=n)
    vals = (100.0 + rng.standard_normal((n, 3))).astype(np.float32)
    ref = np.zeros((6, 3))
    np.add.at(ref, idx, vals.astype(np.float64))
    out = index_add(6, asarray(idx), asarray(vals), xp=xp)
    assert out.dtype == xp.float32
    assert rel_error(out, ref) < 1e-6


def test_index_add_nonfinite_values_stay_visible(xp, asarray):
    vals = np.array([[1.0], [np.inf], [2.0], [np.nan]])
    with np.errstate(invalid="ignore"):  # inf - inf inside the NumPy-based backends
        out = to_numpy(index_add(4, asarray(np.array([0, 1, 0, 2])), asarray(vals), xp=xp))
    assert out[0, 0] == 3.0  # rows before the first non-finite one are exact
    assert not np.isfinite(out[1, 0]) and not np.isfinite(out[2, 0])


def test_index_add_shape_errors(xp, asarray):
    with pytest.raises(ValueError, match=r"idx of shape \(N,\)"):
        index_add(3, asarray(np.zeros((2, 2), dtype=np.int64)), asarray(np.zeros((4, 1))), xp=xp)
    with pytest.raises(ValueError, match=r"values of shape \(N, D\)"):
        index_add(3, asarray(np.zeros(2, dtype=np.int64)), asarray(np.zeros((3, 1))), xp=xp)


def test_index_add_timing_large_vocab(xp, asarray):
    """Times V=50k, 1e5 tokens, D=128 once (printed with ``pytest -s``) and checks the result."""
    rng = np.random.default_rng(3)
    V, N, D = 50_000, 100_000, 128
    idx = rng.integers(0, V, size=N)
    vals = rng.standard_normal((N, D)).astype(np.float32)
    i, v = asarray(idx), asarray(vals)
    index_add(V, i[:10], v[:10, :], xp=xp)  # warm-up
    t0 = time.perf_counter()
    out = index_add(V, i, v, xp=xp)
    _ = to_numpy(out)  # includes the device sync on GPU backends
    dt = time.perf_counter() - t0
    print(f"\nindex_add V={V} N={N} D={D} float32 on {backend_name(xp)}: {dt * 1e3:.1f} ms")
    ref = np.zeros((V, D))
    np.add.at(ref, idx, vals.astype(np.float64))
    assert rel_error(out, ref) < 1e-6


# -- Embedding ---------------------------------------------------------------------------------


def test_init_like_torch_and_state_dict(xp, device):
    emb = Embedding(7, 4, padding_idx=2, xp=xp, device=device, seed=5)
    W = to_numpy(emb.state_dict()["weight"])
    assert list(emb.state_dict()) == ["weight"] and W.shape == (7, 4) and W.dtype == np.float32
    expected = np.random.default_rng(5).standard_normal((7, 4)).astype(np.float32)
    expected[2] = 0.0
    np.testing.assert_array_equal(W, expected)
    big = to_numpy(Embedding(1000, 50, xp=xp, device=device, seed=0).params["weight"])
    assert abs(big.mean()) < 0.02 and abs(big.std() - 1.0) < 0.02  # N(0, 1)


@pytest.mark.parametrize("shape", [(), (6,), (3, 4), (2, 1, 5)])
def test_forward_gathers_rows(xp, device, asarray, shape):
    rng = np.random.default_rng(0)
    emb = Embedding(9, 3, xp=xp, device=device, dtype="float64", seed=1)
    ids = np.asarray(rng.integers(0, 9, size=shape))
    # reshape on the backend: the asarray fixture turns 0-d arrays into shape (1,)
    y = emb(xp.reshape(asarray(ids.reshape(-1)), shape))
    W = to_numpy(emb.params["weight"])
    assert tuple(y.shape) == (*shape, 3)
    np.testing.assert_array_equal(to_numpy(y), W[ids])


def test_forward_accepts_int32_and_uint8_ids(xp, device, asarray):
    emb = Embedding(6, 2, xp=xp, device=device, seed=0)
    W = to_numpy(emb.params["weight"])
    for dt in (np.int32, np.uint8):
        ids = np.array([[5, 0], [0, 3]], dtype=dt)
        np.testing.assert_array_equal(to_numpy(emb(asarray(ids))), W[ids])


@pytest.mark.parametrize("padding_idx", [None, 1, -1])
def test_backward_finite_differences(xp, device, asarray, padding_idx):
    rng = np.random.default_rng(4)
    V, D = 5, 3
    emb = Embedding(V, D, padding_idx=padding_idx, xp=xp, device=device, dtype="float64", seed=2)
    ids = np.array([[1, 4, 1, 0], [4, 4, 1, 2]])  # repeats, an unused row (3), the last row
    R = rng.standard_normal((*ids.shape, D))
    y, cache = emb.forward(asarray(ids))
    dW = emb.backward(cache, asarray(R))[1]["weight"]

    def loss(W_np):
        return float(np.sum(to_numpy(embedding(asarray(W_np), asarray(ids), xp=xp)[0]) * R))

    num = numeric_grad(loss, to_numpy(emb.params["weight"]))
    if padding_idx is not None:
        num[padding_idx % V] = 0.0  # the padding row gets no gradient, by definition
        assert np.all(to_numpy(dW)[padding_idx % V] == 0.0)
    assert rel_error(dW, num) < 1e-6
    assert np.all(to_numpy(dW)[3] == 0.0)


def test_backward_dense_onehot_float32(xp, device, asarray):
    rng = np.random.default_rng(6)
    emb = Embedding(50, 8, xp=xp, device=device, seed=3)
    ids = rng.integers(0, 50, size=(16, 20))
    dy = rng.standard_normal((16, 20, 8)).astype(np.float32)
    _, cache = emb.forward(asarray(ids))
    dW = emb.backward(cache, asarray(dy))[1]["weight"]
    assert dW.dtype == xp.float32
    assert rel_error(dW, _onehot_sum(50, ids.reshape(-1), dy.reshape(-1, 8))) < 1e-6


@pytest.mark.parametrize("padding_idx", [None, 0])
def test_matches_torch(xp, device, asarray, padding_idx):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    emb = Embedding(12, 5, padding_idx=padding_idx, xp=xp, device=device, dtype="float64", seed=4)
    ids = rng.integers(0, 12, size=(4, 6))
    ids[0, :3] = 0
    dy = rng.standard_normal((4, 6, 5))
    ref = torch.nn.Embedding(12, 5, padding_idx=padding_idx, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(to_numpy(emb.params["weight"]).copy()))
    y_ref = ref(torch.from_numpy(ids))
    y_ref.backward(torch.from_numpy(dy))
    y, cache = emb.forward(asarray(ids))
    assert rel_error(y, y_ref) == 0.0
    assert rel_error(emb.backward(cache, asarray(dy))[1]["weight"], ref.weight.grad) < 1e-14


def test_padding_row_exact_zero_with_nonfinite_dy(xp, device, asarray):
    emb = Embedding(4, 2, padding_idx=1, xp=xp, device=device, dtype="float64", seed=0)
    _, cache = emb.forward(asarray(np.array([1, 2, 1])))
    dy = np.array([[np.nan, np.inf], [1.0, 2.0], [-np.inf, 3.0]])
    dW = to_numpy(emb.backward(cache, asarray(dy))[1]["weight"])
    np.testing.assert_array_equal(dW, [[0, 0], [0, 0], [1, 2], [0, 0]])


def test_does_not_modify_inputs(xp, device, asarray):
    emb = Embedding(4, 2, padding_idx=0, xp=xp, device=device, dtype="float64", seed=0)
    W0 = to_numpy(emb.params["weight"]).copy()
    ids_np = np.array([0, 1, 1, 3])
    dy_np = np.ones((4, 2))
    ids, dy = asarray(ids_np), asarray(dy_np)
    _, cache = emb.forward(ids)
    emb.backward(cache, dy)
    np.testing.assert_array_equal(to_numpy(emb.params["weight"]), W0)
    np.testing.assert_array_equal(to_numpy(ids), ids_np)
    np.testing.assert_array_equal(to_numpy(dy), dy_np)


def test_errors(xp, device, asarray):
    emb = Embedding(10, 3, xp=xp, device=device, seed=0)
    with pytest.raises(TypeError, match="ids must be an integer array"):
        emb(asarray(np.array([1.0, 2.0])))
    with pytest.raises(TypeError, match="ids must be an integer array"):
        emb(asarray(np.array([True, False])))
    with pytest.raises(ValueError, match=r"\[0, 10\).*min -1 and max 4"):
        emb(asarray(np.array([2, -1, 4])))
    with pytest.raises(ValueError, match=r"\[0, 10\).*min 0 and max 10"):
        emb(asarray(np.array([[0, 10]])))
    other = other_backend(xp)
    with pytest.raises(TypeError, match="different backends"):
        emb(other.asarray(np.array([1, 2])))
    _, cache = emb.forward(asarray(np.array([[1, 2]])))
    with pytest.raises(ValueError, match=r"\(1, 2, 3\)"):
        emb.backward(cache, asarray(np.zeros((2, 3), dtype=np.float32)))
    with pytest.raises(TypeError, match="dtype"):
        emb.backward(cache, asarray(np.zeros((1, 2, 3), dtype=np.float64)))


@pytest.mark.parametrize(
    ("args", "kwargs", "exc"),
    [
        ((0, 3), {}, ValueError),
        ((4, -1), {}, ValueError),
        ((4.0, 3), {}, ValueError),
        ((4, 3), {"padding_idx": 4}, ValueError),
        ((4, 3), {"padding_idx": -5}, ValueError),
        ((4, 3), {"padding_idx": 1.0}, TypeError),
    ],
)
def test_constructor_errors(args, kwargs, exc):
    with pytest.raises(exc):
        Embedding(*args, **kwargs)


def test_negative_padding_idx_and_repr():
    emb = Embedding(6, 2, padding_idx=-2, seed=0)
    assert emb.padding_idx == 4
    assert np.all(to_numpy(emb.params["weight"])[4] == 0.0)
    assert "Embedding(6, 2, padding_idx=4" in repr(emb)
