"""Single-step cells: finite differences, a Python loop of cells equal to the layer, and
``torch.nn.*Cell`` + autograd as the oracle (where torch is installed)."""

from __future__ import annotations

import numpy as np
import pytest

import xprnn
from xprnn.backend import to_numpy

from ._helpers import numeric_grad, rel_error

B, I, H = 3, 4, 5
KINDS = {"rnn": (xprnn.RNNCell, {}), "rnn_relu": (xprnn.RNNCell, {"nonlinearity": "relu"}),
         "lstm": (xprnn.LSTMCell, {}), "gru": (xprnn.GRUCell, {})}


def _make(kind, xp, device, bias=True, seed=0):
    cls, kw = KINDS[kind]
    return cls(I, H, bias=bias, dtype="float64", xp=xp, device=device, seed=seed, **kw)


def _state(kind, arrays):
    return tuple(arrays) if kind == "lstm" else arrays[0]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batched", [True, False])
def test_cell_backward_matches_finite_differences(xp, device, asarray, kind, bias, batched):
    cell = _make(kind, xp, device, bias)
    rng = np.random.default_rng(1)
    lead = (B,) if batched else ()
    ns = 2 if kind == "lstm" else 1
    x = rng.standard_normal((*lead, I))
    s0 = [rng.standard_normal((*lead, H)) * 0.5 for _ in range(ns)]
    S = [rng.standard_normal((*lead, H)) for _ in range(ns)]

    def loss(x_np, s_np):
        new = cell(asarray(x_np), _state(kind, [asarray(s) for s in s_np]))
        new = new if isinstance(new, tuple) else (new,)
        return sum(float(np.sum(to_numpy(a) * w)) for a, w in zip(new, S))

    new, cache = cell.forward(asarray(x), _state(kind, [asarray(s) for s in s0]))
    dx, ds, grads = cell.backward(cache, _state(kind, [asarray(w) for w in S]))
    ds = ds if isinstance(ds, tuple) else (ds,)
    assert tuple(dx.shape) == x.shape
    assert rel_error(dx, numeric_grad(lambda v: loss(v, s0), x)) < 1e-6
    for i in range(ns):
        def f(v, i=i):
            s = list(s0)
            s[i] = v
            return loss(x, s)
        assert rel_error(ds[i], numeric_grad(f, s0[i])) < 1e-6
    assert set(grads) == set(cell.params)
    for k, p in dict(cell.params).items():
        def g(v, k=k, p=p):
            cell.params[k] = asarray(v)
            try:
                return loss(x, s0)
            finally:
                cell.params[k] = p
        assert rel_error(grads[k], numeric_grad(g, to_numpy(p))) < 1e-6, k


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_loop_of_cells_equals_the_layer(xp, device, asarray, kind):
    cls, kw = {"rnn": (xprnn.RNN, {}), "rnn_relu": (xprnn.RNN, {"nonlinearity": "relu"}),
               "lstm": (xprnn.LSTM, {}), "gru": (xprnn.GRU, {})}[kind]
    layer = cls(I, H, dtype="float64", xp=xp, device=device, seed=4, **kw)
    cell = _make(kind, xp, device)
    cell.load_state_dict({k: layer.params[f"{k}_l0"] for k in cell.params})
    x = np.random.default_rng(2).standard_normal((6, B, I))
    out, _ = layer(asarray(x))
    state, outs = None, []
    for t in range(6):
        state = cell(asarray(x[t]), state)
        outs.append(to_numpy(state[0] if isinstance(state, tuple) else state))
    np.testing.assert_allclose(np.stack(outs), to_numpy(out), rtol=1e-12, atol=1e-14)


def test_cell_errors(xp, device, asarray):
    cell = _make("lstm", xp, device)
    x = asarray(np.zeros((B, I)))
    with pytest.raises(TypeError, match=r"state must be a pair \(h, c\), got a tuple of 1"):
        cell(x, (asarray(np.zeros((B, H))),))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 4\) or \(4,\), got \(3, 5\)"):
        cell(asarray(np.zeros((B, 5))))
    with pytest.raises(ValueError, match=r"c has shape \(3, 4\), expected \(3, 5\)"):
        cell(x, (asarray(np.zeros((B, H))), asarray(np.zeros((B, 4)))))
    with pytest.raises(ValueError, match="nonlinearity must be"):
        xprnn.RNNCell(I, H, nonlinearity="sigmoid")


def test_cells_save_and_load(xp, device, asarray, tmp_path):
    cell = xprnn.RNNCell(I, H, nonlinearity="relu", xp=xp, device=device, seed=3)
    again = xprnn.load(xprnn.save(cell, tmp_path / "c"), xp=xp, device=device)
    assert type(again) is xprnn.RNNCell and again.config == cell.config
    x = asarray(np.ones((B, I), dtype=np.float32))
    np.testing.assert_array_equal(to_numpy(again(x)), to_numpy(cell(x)))


@pytest.mark.torch
@pytest.mark.parametrize("kind", list(KINDS))
def test_cells_match_torch(kind):
    torch = pytest.importorskip("torch")
    cls, kw = KINDS[kind]
    tcls = {"rnn": torch.nn.RNNCell, "rnn_relu": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell,
            "gru": torch.nn.GRUCell}[kind]
    tkw = {"nonlinearity": "relu"} if kind == "rnn_relu" else {}
    torch.manual_seed(0)
    ref = tcls(I, H, **tkw).double()
    ours = cls(I, H, dtype="float64", **kw)
    ours.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    rng = np.random.default_rng(3)
    x = rng.standard_normal((B, I))
    ns = 2 if kind == "lstm" else 1
    s0 = [rng.standard_normal((B, H)) for _ in range(ns)]
    S = [rng.standard_normal((B, H)) for _ in range(ns)]
    xt = torch.tensor(x, requires_grad=True)
    st = [torch.tensor(s, requires_grad=True) for s in s0]
    new_t = ref(xt, tuple(st) if ns == 2 else st[0])
    new_t = new_t if isinstance(new_t, tuple) else (new_t,)
    sum((a * torch.tensor(w)).sum() for a, w in zip(new_t, S)).backward()
    new, cache = ours.forward(x, _state(kind, s0))
    dx, ds, grads = ours.backward(cache, _state(kind, S))
    new = new if isinstance(new, tuple) else (new,)
    ds = ds if isinstance(ds, tuple) else (ds,)
    for a, b in zip(new, new_t):
        assert rel_error(a, b.detach().numpy()) < 1e-13
    assert rel_error(dx, xt.grad.numpy()) < 1e-13
    for d, s in zip(ds, st):
        assert rel_error(d, s.grad.numpy()) < 1e-13
    for k, p in ref.named_parameters():
        assert rel_error(grads[k], p.grad.numpy()) < 1e-13, k
