"""PyTorch as the oracle: load a torch.nn state_dict, compare outputs and autograd gradients."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import xprnn
from xprnn.backend import to_numpy

pytestmark = pytest.mark.torch

PAIRS = {"RNN": xprnn.RNN, "LSTM": xprnn.LSTM, "GRU": xprnn.GRU}  # torch.nn has the same names
TOL = {"float32": 1e-5, "float64": 1e-10}


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed (torch session only)")


@pytest.mark.parametrize(
    "name,dtype,layers,bidir,packed",
    list(itertools.product(PAIRS, ("float32", "float64"), (1, 2), (False, True), (False, True))),
)
def test_matches_torch_autograd(torch, xp, device, asarray, name, dtype, layers, bidir, packed):
    ours_cls, torch_cls = PAIRS[name], getattr(torch.nn, name)
    T, B, I, H = 7, 4, 5, 6
    tdtype = getattr(torch, dtype)
    torch.manual_seed(0)
    ref = torch_cls(I, H, num_layers=layers, bidirectional=bidir).to(tdtype)
    layer = ours_cls(I, H, num_layers=layers, bidirectional=bidir, dtype=dtype, xp=xp,
                     device=device)
    layer.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})

    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    lengths = np.array([7, 3, 5, 1])
    D = 2 if bidir else 1
    R = rng.standard_normal((T, B, D * H)).astype(dtype)
    S = rng.standard_normal((layers * D, B, H)).astype(dtype)
    if packed:
        R[np.arange(T)[:, None] >= lengths[None, :]] = 0.0  # padded outputs carry no gradient

    xt = torch.tensor(x, requires_grad=True)
    if packed:
        seq = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths),
                                                      enforce_sorted=False)
        out_t, hn_t = ref(seq)
        out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out_t, total_length=T)
    else:
        out_t, hn_t = ref(xt)
    h_t = hn_t[0] if name == "LSTM" else hn_t
    ((out_t * torch.tensor(R)).sum() + (h_t * torch.tensor(S)).sum()).backward()

    out, h_n, cache = layer.forward(asarray(x), lengths=lengths if packed else None)
    d_h_n = (asarray(S), None) if name == "LSTM" else asarray(S)
    dx, _, grads = layer.backward(cache, asarray(R), d_h_n)
    h = h_n[0] if name == "LSTM" else h_n

    tol = TOL[dtype]
    np.testing.assert_allclose(to_numpy(out), out_t.detach().numpy(), atol=tol, rtol=tol)
    np.testing.assert_allclose(to_numpy(h), h_t.detach().numpy(), atol=tol, rtol=tol)
    np.testing.assert_allclose(to_numpy(dx), xt.grad.numpy(), atol=10 * tol, rtol=10 * tol)
    for k, p in ref.named_parameters():
        np.testing.assert_allclose(to_numpy(grads[k]), p.grad.numpy(), atol=10 * tol,
                                   rtol=10 * tol, err_msg=k)


def test_gru_reset_after_differs_from_reset_before(torch, xp, device, asarray):
    """Guard the convention: the reset gate multiplies (W_hn h + b_hn), bias included."""
    ref = torch.nn.GRU(3, 4).double()
    layer = xprnn.GRU(3, 4, dtype="float64", xp=xp, device=device)
    sd = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    sd["bias_hh_l0"] = sd["bias_hh_l0"] + 1.0  # makes the convention visible
    ref.load_state_dict({k: torch.tensor(v) for k, v in sd.items()})
    layer.load_state_dict(sd)
    x = np.random.default_rng(1).standard_normal((5, 2, 3))
    out, _ = layer(asarray(x))
    np.testing.assert_allclose(to_numpy(out), ref(torch.tensor(x))[0].detach().numpy(),
                               rtol=1e-12, atol=1e-12)


def test_state_dict_keys_and_shapes_equal_torch(torch, xp, device):
    for name, ours_cls in PAIRS.items():
        ref = getattr(torch.nn, name)(5, 6, num_layers=2, bidirectional=True, bias=True)
        ours = ours_cls(5, 6, num_layers=2, bidirectional=True, xp=xp, device=device)
        assert list(ours.state_dict()) == list(ref.state_dict()), name
        for k, v in ref.state_dict().items():
            assert tuple(ours.state_dict()[k].shape) == tuple(v.shape), (name, k)
        # the initialisation range follows torch: U(-1/sqrt(H), 1/sqrt(H))
        w = to_numpy(ours.state_dict()["weight_hh_l1_reverse"])
        assert np.abs(w).max() <= 1 / np.sqrt(6) and np.abs(w).max() > 0.8 / np.sqrt(6)
