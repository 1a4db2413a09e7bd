"""Seeded random numbers (``_random.Generator``) and inverted dropout, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from xprnn.backend import backend_name, device_of, to_numpy
from xprnn.backend.random import Generator
from xprnn.nn.dropout import Dropout, dropout, dropout_backward

from ._helpers import numeric_grad, rel_error

# -- Generator ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniform_backend_dtype_range(xp, device, dtype):
    u = Generator(0).uniform((200, 50), dtype, xp=xp, device=device)
    assert type(u) is type(xp.asarray([0.0]))  # noqa: E721  (the backend's own array type)
    assert device is None or device_of(u) == device
    assert tuple(u.shape) == (200, 50) and u.dtype == getattr(xp, dtype)
    a = to_numpy(u)
    assert a.min() >= 0.0 and a.max() < 1.0
    assert abs(a.mean() - 0.5) < 0.01 and abs(a.var() - 1 / 12) < 0.005  # U[0, 1): 1/2, 1/12


def test_same_seed_same_stream(xp, device):
    def draw(g, shape):
        return to_numpy(g.uniform(shape, xp=xp, device=device))

    g1, g2 = Generator(42), Generator(42)
    a1, b1 = draw(g1, (5, 3)), draw(g1, (7,))
    a2, b2 = draw(g2, (5, 3)), draw(g2, (7,))
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(b1, b2)
    assert not np.array_equal(a1.reshape(-1)[:7], b1)  # the stream moves on
    assert not np.array_equal(a1, draw(Generator(43), (5, 3)))


def test_uses_the_backends_own_generator(xp, device):
    u = to_numpy(Generator(7).uniform((4, 6), "float64", xp=xp, device=device))
    if backend_name(xp) == "torch":
        torch = pytest.importorskip("torch")
        expected = torch.rand(
            (4, 6), generator=torch.Generator().manual_seed(7), dtype=torch.float64
        ).numpy()
    elif backend_name(xp) == "cupy":
        cupy = pytest.importorskip("cupy")
        expected = cupy.random.default_rng(7).random((4, 6), dtype="float64").get()
    else:  # NumPy, and NumPy's stream for array-api-strict (on any device) and JAX
        expected = np.random.default_rng(7).random((4, 6))
    np.testing.assert_array_equal(u, expected)


def test_default_target_is_constructor_target(xp, device):
    u = Generator(1, xp=xp, device=device).uniform((3,))
    assert type(u) is type(xp.asarray([0.0]))  # noqa: E721
    assert u.dtype == xp.float32
    assert device is None or device_of(u) == device


@pytest.mark.parametrize(
    ("seed", "exc"), [(-1, ValueError), (2**64, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_seed_errors(seed, exc):
    with pytest.raises(exc, match="seed"):
        Generator(seed)


def test_no_seed_gives_fresh_streams():
    a, b = Generator(), Generator()
    assert a.seed != b.seed
    assert not np.array_equal(a.uniform((8,)), b.uniform((8,)))


# -- dropout -----------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_mask_values_and_keep_rate(xp, asarray, p):
    x = asarray(np.full((400, 250), 2.0, dtype=np.float32))
    y, mask = dropout(x, p, Generator(0), xp=xp)
    m = to_numpy(mask)
    assert mask.dtype == xp.float32 and tuple(mask.shape) == (400, 250)
    scale = np.float32(1.0) / np.float32(1.0 - p)
    assert set(np.unique(m)) <= {np.float32(0.0), scale}
    n = m.size
    kept = np.count_nonzero(m) / n
    assert abs(kept - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)  # binomial, 5 sigma
    np.testing.assert_array_equal(to_numpy(y), 2.0 * m)
    assert abs(to_numpy(y).mean() - 2.0) < 5 * 2.0 * np.sqrt(p / (1 - p) / n)  # mean kept


def test_off_returns_input(xp, asarray):
    x = asarray(np.arange(6.0).reshape(2, 3))
    for p, training in ((0.0, True), (0.5, False), (0.0, False)):
        y, mask = dropout(x, p, Generator(0), xp=xp, training=training)
        assert y is x and mask is None
    dy = asarray(np.ones((2, 3)))
    assert dropout_backward(dy, None) is dy


def test_backward_finite_differences(xp, asarray):
    rng = np.random.default_rng(1)
    x_np = rng.standard_normal((4, 5))
    R = rng.standard_normal((4, 5))

    def loss(x):  # a fresh generator with the same seed draws the same mask every call
        y, _ = dropout(asarray(x), 0.3, Generator(11), xp=xp)
        return float(np.sum(to_numpy(y) * R))

    _, mask = dropout(asarray(x_np), 0.3, Generator(11), xp=xp)
    dx = dropout_backward(asarray(R), mask)
    assert rel_error(dx, numeric_grad(loss, x_np)) < 1e-6


def test_extreme_p_and_values(xp, asarray):
    x = asarray(np.array([1e30, -1e30, 0.0, 3.0] * 250))
    y, mask = dropout(x, 0.999, Generator(0), xp=xp)
    y_np, m = to_numpy(y), to_numpy(mask)
    assert np.all(np.isfinite(y_np))
    assert set(np.unique(m)) <= {0.0, 1.0 / (1.0 - 0.999)}
    np.testing.assert_array_equal(y_np, to_numpy(x) * m)


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, "0.5", None, True, float("nan")])
def test_invalid_p(xp, asarray, p):
    with pytest.raises(ValueError, match="dropout probability p"):
        dropout(asarray(np.ones(3)), p, Generator(0), xp=xp)
    with pytest.raises(ValueError, match="dropout probability p"):
        Dropout(p)


# -- Dropout layer -----------------------------------------------------------------------------


def test_layer_train_eval_and_backward(xp, asarray):
    layer = Dropout(0.4, seed=3)
    x = asarray(np.ones((30, 20)))
    y, cache = layer.forward(x)
    dy = asarray(np.full((30, 20), 2.0))
    dx, grads = layer.backward(cache, dy)
    assert grads == {}
    m = to_numpy(cache)
    np.testing.assert_array_equal(to_numpy(y), m)
    np.testing.assert_array_equal(to_numpy(dx), 2.0 * m)
    assert 0 < np.count_nonzero(m) < m.size

    layer.eval()
    y, cache = layer.forward(x)
    assert y is x and cache is None and layer.backward(cache, dy)[0] is dy
    layer.train()
    assert layer.training and not np.array_equal(to_numpy(layer(x)), m)  # stream moved on


def test_layer_same_seed_same_masks(xp, asarray):
    x = asarray(np.ones((10, 10), dtype=np.float32))
    a, b = Dropout(0.5, seed=9), Dropout(0.5, seed=9)
    for _ in range(3):
        np.testing.assert_array_equal(to_numpy(a(x)), to_numpy(b(x)))
    assert a.seed == 9


def test_layer_is_a_module_without_parameters(xp, device, asarray):
    layer = Dropout(0.2, seed=0)
    assert layer.state_dict() == {} and layer.num_parameters() == 0
    layer.to(xp, device=device)
    assert "p=0.2" in repr(layer)
    with pytest.raises(TypeError, match="floating-point"):
        layer(asarray(np.array([1, 2, 3])))
    with pytest.raises(TypeError, match="must be an array"):
        layer([1.0, 2.0])
