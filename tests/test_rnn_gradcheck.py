"""Every backward pass against float64 central finite differences, on the backend under test.

For each cell x {1, 2 layers} x {uni, bidirectional} x {with, without lengths} x {batch_first}:
the gradient of ``L = sum(out * R) + sum(h_n * S) (+ sum(c_n * S_c))`` with respect to every
parameter, ``x`` and ``h0`` (and ``c0``) matches finite differences to a relative error < 1e-6.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import xprnn
from xprnn.backend import to_numpy

from ._helpers import numeric_grad, rel_error

T, B, I, H = 3, 2, 2, 2
CELLS = {"rnn_tanh": (xprnn.RNN, {}), "rnn_relu": (xprnn.RNN, {"nonlinearity": "relu"}),
         "lstm": (xprnn.LSTM, {}), "gru": (xprnn.GRU, {})}
CONFIGS = list(itertools.product(CELLS, (1, 2), (False, True), (False, True), (False, True)))


def _loss_fn(layer, asarray, R, S, lengths):
    """Scalar loss of the layer as a function of x, the initial state and the parameters."""

    def loss(x, h0):
        out, h_n = layer(asarray(x), h0, lengths)
        states = h_n if isinstance(h_n, tuple) else (h_n,)
        return float(np.sum(to_numpy(out) * R)) + sum(
            float(np.sum(to_numpy(s) * w)) for s, w in zip(states, S)
        )

    return loss


@pytest.mark.parametrize("cell,layers,bidir,with_lengths,batch_first", CONFIGS)
def test_backward_matches_finite_differences(xp, device, asarray, cell, layers, bidir, with_lengths,
                                             batch_first):
    cls, kw = CELLS[cell]
    layer = cls(I, H, num_layers=layers, bidirectional=bidir, batch_first=batch_first,
                dtype="float64", xp=xp, device=device, seed=3, **kw)
    rng = np.random.default_rng(7)
    D = 2 if bidir else 1
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    n_states = 2 if cell == "lstm" else 1
    h0 = [rng.standard_normal((layers * D, B, H)) * 0.5 for _ in range(n_states)]
    lengths = [T, 2] if with_lengths else None
    out_shape = (B, T, D * H) if batch_first else (T, B, D * H)
    R = rng.standard_normal(out_shape)
    S = [rng.standard_normal((layers * D, B, H)) for _ in range(n_states)]

    def state(arrays):
        a = tuple(asarray(s) for s in arrays)
        return a if n_states == 2 else a[0]

    out, h_n, cache = layer.forward(asarray(x), state(h0), lengths)
    dx, dh0, grads = layer.backward(cache, asarray(R), state(S))
    dh0 = dh0 if n_states == 2 else (dh0,)
    loss = _loss_fn(layer, asarray, R, S, lengths)

    assert rel_error(dx, numeric_grad(lambda v: loss(v, state(h0)), x)) < 1e-6
    for i in range(n_states):
        def f(v, i=i):
            hs = list(h0)
            hs[i] = v
            return loss(x, state(hs))
        assert rel_error(dh0[i], numeric_grad(f, h0[i])) < 1e-6, f"state {i}"
    original = dict(layer.params)
    assert set(grads) == set(layer.state_dict())
    for name, p in original.items():
        def f(v, name=name, p=p):
            layer.params[name] = asarray(v)
            try:
                return loss(x, state(h0))
            finally:
                layer.params[name] = p
        assert rel_error(grads[name], numeric_grad(f, to_numpy(p))) < 1e-6, name


def test_padded_outputs_are_zero_and_h_n_is_last_valid_state(xp, device, asarray):
    layer = xprnn.GRU(I, H, bidirectional=True, dtype="float64", xp=xp, device=device, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 2, I))
    out, h_n = layer(asarray(x), lengths=[4, 2])
    out = to_numpy(out)
    assert np.all(out[2:, 1] == 0.0)
    # the row of length 2 alone, unpadded, gives the same state and outputs
    out_short, h_short = layer(asarray(x[:2, 1:2]))
    np.testing.assert_allclose(out[:2, 1:2], to_numpy(out_short), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_numpy(h_n)[:, 1:2], to_numpy(h_short), rtol=1e-12, atol=1e-12)


def test_unbatched_input_matches_batch_of_one(xp, device, asarray):
    layer = xprnn.LSTM(I, H, num_layers=2, dtype="float64", xp=xp, device=device, seed=1)
    x = np.random.default_rng(1).standard_normal((5, I))
    out1, (h1, c1), cache = layer.forward(asarray(x))
    out3, (h3, c3) = layer(asarray(x[:, None, :]))
    assert tuple(out1.shape) == (5, H) and tuple(h1.shape) == (2, H)
    np.testing.assert_allclose(to_numpy(out1), to_numpy(out3)[:, 0], rtol=1e-12)
    np.testing.assert_allclose(to_numpy(c1), to_numpy(c3)[:, 0], rtol=1e-12)
    dx, (dh0, dc0), _ = layer.backward(cache, asarray(np.ones((5, H))))
    assert tuple(dx.shape) == (5, I) and tuple(dh0.shape) == (2, H)


def test_truncated_bptt_chunks_equal_one_pass(xp, device, asarray):
    """Feeding h_n as the next chunk's h0 gives exactly the one-pass outputs."""
    layer = xprnn.LSTM(I, H, dtype="float64", xp=xp, device=device, seed=2)
    x = np.random.default_rng(2).standard_normal((6, B, I))
    out, _ = layer(asarray(x))
    out_a, state = layer(asarray(x[:3]))
    out_b, _ = layer(asarray(x[3:]), state)
    np.testing.assert_allclose(
        np.concatenate([to_numpy(out_a), to_numpy(out_b)]), to_numpy(out), rtol=1e-12
    )
