"""``LSTM(proj_size=P)``: finite differences on every backend, torch.nn.LSTM + autograd as the
oracle, checkpoints and weight interchange, and clear errors where a projection cannot be."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import xprnn
from xprnn.backend import to_numpy

from ._helpers import numeric_grad, rel_error

T, B, I, H, P = 4, 2, 3, 4, 2


def _loss(layer, asarray, x, state, R, S, lengths):
    out, (h, c) = layer(asarray(x), tuple(asarray(s) for s in state), lengths)
    return float(np.sum(to_numpy(out) * R)) + sum(
        float(np.sum(to_numpy(a) * w)) for a, w in zip((h, c), S))


@pytest.mark.parametrize("layers,bidir,with_lengths",
                         list(itertools.product((1, 2), (False, True), (False, True))))
def test_projected_lstm_matches_finite_differences(xp, device, asarray, layers, bidir,
                                                   with_lengths):
    layer = xprnn.LSTM(I, H, num_layers=layers, bidirectional=bidir, proj_size=P,
                       dtype="float64", xp=xp, device=device, seed=1)
    D = 2 if bidir else 1
    assert tuple(layer.params["weight_hr_l0"].shape) == (P, H)
    assert tuple(layer.params["weight_hh_l0"].shape) == (4 * H, P)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, B, I))
    state = [rng.standard_normal((layers * D, B, n)) * 0.5 for n in (P, H)]
    R = rng.standard_normal((T, B, D * P))
    S = [rng.standard_normal((layers * D, B, n)) for n in (P, H)]
    lengths = [T, 2] if with_lengths else None
    out, (h, c), cache = layer.forward(asarray(x), tuple(asarray(s) for s in state), lengths)
    assert tuple(out.shape) == (T, B, D * P) and tuple(h.shape) == (layers * D, B, P)
    assert tuple(c.shape) == (layers * D, B, H)
    dx, (dh0, dc0), grads = layer.backward(cache, asarray(R), tuple(asarray(w) for w in S))

    def f(x_=x, s_=state):
        return _loss(layer, asarray, x_, s_, R, S, lengths)

    assert rel_error(dx, numeric_grad(lambda v: f(x_=v), x)) < 1e-6
    assert rel_error(dh0, numeric_grad(lambda v: f(s_=[v, state[1]]), state[0])) < 1e-6
    assert rel_error(dc0, numeric_grad(lambda v: f(s_=[state[0], v]), state[1])) < 1e-6
    assert set(grads) == set(layer.params)
    for k, p in dict(layer.params).items():
        def g(v, k=k, p=p):
            layer.params[k] = asarray(v)
            try:
                return f()
            finally:
                layer.params[k] = p
        assert rel_error(grads[k], numeric_grad(g, to_numpy(p))) < 1e-6, k


@pytest.mark.torch
@pytest.mark.parametrize("layers,bidir", [(1, False), (2, True)])
def test_projected_lstm_matches_torch(layers, bidir):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ref = torch.nn.LSTM(I, H, num_layers=layers, bidirectional=bidir, proj_size=P).double()
    ours = xprnn.LSTM(I, H, num_layers=layers, bidirectional=bidir, proj_size=P,
                      dtype="float64")
    ours.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    D = 2 if bidir else 1
    rng = np.random.default_rng(3)
    x = rng.standard_normal((T, B, I))
    R = rng.standard_normal((T, B, D * P))
    xt = torch.tensor(x, requires_grad=True)
    out_t, (h_t, c_t) = ref(xt)
    (out_t * torch.tensor(R)).sum().backward()
    out, (h, c), cache = ours.forward(x)
    dx, _, grads = ours.backward(cache, R)
    assert rel_error(out, out_t.detach().numpy()) < 1e-13
    assert rel_error(h, h_t.detach().numpy()) < 1e-13
    assert rel_error(c, c_t.detach().numpy()) < 1e-13
    assert rel_error(dx, xt.grad.numpy()) < 1e-12
    for k, p in ref.named_parameters():
        assert rel_error(grads[k], p.grad.numpy()) < 1e-12, k


def test_projection_in_checkpoints(xp, device, asarray, tmp_path):
    layer = xprnn.LSTM(I, H, proj_size=P, bidirectional=True, xp=xp, device=device, seed=0)
    assert layer.config["proj_size"] == P and "proj_size" not in xprnn.LSTM(I, H).config
    again = xprnn.load(xprnn.save(layer, tmp_path / "p"), xp=xp, device=device)
    x = asarray(np.ones((T, B, I), dtype=np.float32))
    np.testing.assert_array_equal(to_numpy(again(x)[0]), to_numpy(layer(x)[0]))


def test_projection_errors():
    with pytest.raises(ValueError, match="proj_size is not supported by the 'gru' cell"):
        xprnn.GRU(I, H, proj_size=2)
    with pytest.raises(ValueError, match="proj_size must be smaller than hidden_size"):
        xprnn.LSTM(I, H, proj_size=H)
    layer = xprnn.LSTM(I, H, proj_size=P)
    with pytest.raises(ValueError, match=r"h0 has shape \(1, 2, 4\), expected \(1, 2, 2\)"):
        layer(np.zeros((T, B, I), np.float32),
              (np.zeros((1, B, H), np.float32), np.zeros((1, B, H), np.float32)))
