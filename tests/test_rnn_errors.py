"""Bad input raises a clear error that names the argument, what was expected and what was got."""

from __future__ import annotations

import numpy as np
import pytest

import xprnn
from xprnn.backend import device_of, to_numpy


def _x(asarray, shape=(4, 2, 3)):
    return asarray(np.random.default_rng(0).standard_normal(shape).astype(np.float32))


def test_wrong_input_width(xp, device, asarray):
    with pytest.raises(ValueError, match=r"x has 5 features.*input_size=3"):
        xprnn.RNN(3, 4, xp=xp, device=device)(_x(asarray, (4, 2, 5)))


def test_wrong_h0_shape(xp, device, asarray):
    h0 = asarray(np.zeros((1, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"h0 has shape \(1, 3, 4\), expected \(1, 2, 4\)"):
        xprnn.GRU(3, 4, xp=xp, device=device)(_x(asarray), h0)


def test_lstm_needs_a_state_pair(xp, device, asarray):
    with pytest.raises(TypeError, match="pair"):
        layer = xprnn.LSTM(3, 4, xp=xp, device=device)
        layer(_x(asarray), (asarray(np.zeros((1, 2, 4), np.float32)),))


@pytest.mark.parametrize("lengths,msg", [([5, 1], r"\[1, 4\].*1\.\.5"), ([0, 2], r"0\.\.2"),
                                         ([4], "one int per batch row")])
def test_bad_lengths(xp, device, asarray, lengths, msg):
    with pytest.raises(ValueError, match=msg):
        xprnn.LSTM(3, 4, xp=xp, device=device)(_x(asarray), lengths=lengths)


def test_integer_x(xp, device, asarray):
    x = asarray(np.ones((4, 2, 3), np.int64))
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        xprnn.RNN(3, 4, xp=xp, device=device)(x)


def test_dtype_mismatch(xp, device, asarray):
    with pytest.raises(TypeError, match="float64.*float32"):
        xprnn.RNN(3, 4, xp=xp, device=device)(asarray(np.ones((4, 2, 3))))


def test_mixed_backends_raise_type_error(xp, device, asarray, backend):
    if backend == "numpy":
        array_api_strict = pytest.importorskip("array_api_strict")
        other = array_api_strict.asarray(np.ones((4, 2, 3), np.float32))
    else:
        other = np.ones((4, 2, 3), np.float32)
    with pytest.raises(TypeError, match="different backends"):
        xprnn.LSTM(3, 4, xp=xp, device=device)(other)


def test_mixed_numpy_and_torch_raise_type_error():
    torch = pytest.importorskip("torch")
    layer = xprnn.RNN(3, 4)  # NumPy parameters
    with pytest.raises(TypeError, match="different backends"):
        layer(torch.ones(4, 2, 3))


def test_constructor_arguments():
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        xprnn.RNN(3, 0)
    with pytest.raises(ValueError, match="nonlinearity"):
        xprnn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        xprnn.GRU(3, 4, dtype="int32")


def test_load_state_dict_names_what_is_wrong(xp, device):
    layer = xprnn.LSTM(3, 4, xp=xp, device=device)
    sd = {k: to_numpy(v) for k, v in layer.state_dict().items()}
    before = to_numpy(layer.state_dict()["weight_ih_l0"]).copy()
    bad = dict(sd)
    del bad["bias_hh_l0"]
    with pytest.raises(KeyError, match="missing \\['bias_hh_l0'\\]"):
        layer.load_state_dict(bad)
    bad = dict(sd, weight_hh_l0=np.zeros((16, 5)))
    with pytest.raises(ValueError, match=r"weight_hh_l0.*\(16, 5\), expected \(16, 4\)"):
        layer.load_state_dict(bad)
    # a failed load changes nothing
    np.testing.assert_array_equal(to_numpy(layer.state_dict()["weight_ih_l0"]), before)


def test_to_moves_parameters(xp, device, asarray):
    layer = xprnn.GRU(3, 4, seed=0)  # NumPy
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    ref, _ = layer(x)
    layer.to(asarray(x))  # the backend and device of an array
    out, _ = layer(asarray(x))
    # float32 on another backend: a GPU's kernels sum in another order and fuse a * b + c into
    # one rounding, so each value may differ by a few float32 ulps, which is more than 1e-6 of
    # an entry near zero. Hence an absolute bound of a few dozen eps of float32 at the outputs'
    # scale (tanh-bounded, |out| < 1) rather than a relative one per entry.
    np.testing.assert_allclose(to_numpy(out), ref, rtol=0, atol=64 * np.finfo(np.float32).eps)
    layer.to(xp, device=device, dtype="float64")
    w = layer.state_dict()["weight_ih_l0"]
    assert w.dtype == xp.float64 and device_of(w) == device_of(asarray(x))


def test_same_seed_same_parameters():
    a, b = xprnn.LSTM(3, 4, seed=5), xprnn.LSTM(3, 4, seed=5)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    other = xprnn.LSTM(3, 4, seed=6)
    assert not np.array_equal(a.params["weight_ih_l0"], other.params["weight_ih_l0"])
