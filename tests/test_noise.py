"""Recurrent dropout and zoneout: finite differences with the masks held fixed, on every
backend; the evaluation-mode maths and the training masks against loops of single-step cells
(an independent route through the same equations); seeding."""

from __future__ import annotations

import numpy as np
import pytest

import xprnn
from xprnn.backend import Generator, to_numpy

from ._helpers import numeric_grad, rel_error

T, B, I, H = 4, 3, 2, 3
CASES = [("rnn", {"recurrent_dropout": 0.4}), ("gru", {"recurrent_dropout": 0.3}),
         ("lstm", {"recurrent_dropout": 0.3}), ("gru", {"zoneout": 0.4}),
         ("lstm", {"zoneout": (0.3, 0.5)}),
         ("lstm", {"zoneout": 0.3, "recurrent_dropout": 0.2, "proj_size": 2}),
         ("rnn", {"zoneout": 0.5, "recurrent_dropout": 0.5})]


@pytest.mark.parametrize("cell,kw", CASES)
@pytest.mark.parametrize("bidir,with_lengths", [(False, False), (True, True)])
def test_noisy_layers_match_finite_differences(xp, device, asarray, cell, kw, bidir,
                                               with_lengths):
    layer = xprnn.Recurrent(cell, I, H, num_layers=2, bidirectional=bidir, dtype="float64",
                            xp=xp, device=device, seed=7, **kw)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I))
    lengths = [T, 2, 3] if with_lengths else None
    saved = layer.rng.get_state()  # the same masks for every evaluation below

    def run(v, keep=False):
        layer.rng.set_state(saved)
        return layer.forward(asarray(v), lengths=lengths, keep=keep)

    out, h_n, cache = run(x, keep=True)
    R = rng.standard_normal(tuple(out.shape))
    dx, _, grads = layer.backward(cache, asarray(R))

    def loss(v):
        return float(np.sum(to_numpy(run(v)[0]) * R))

    assert rel_error(dx, numeric_grad(loss, x)) < 1e-6
    for k, p in dict(layer.params).items():
        def f(v, k=k, p=p):
            layer.params[k] = asarray(v)
            try:
                return loss(x)
            finally:
                layer.params[k] = p
        assert rel_error(grads[k], numeric_grad(f, to_numpy(p))) < 1e-6, k
    # and the noise is really there: without it the output differs
    plain = xprnn.Recurrent(cell, I, H, num_layers=2, bidirectional=bidir, dtype="float64",
                            xp=xp, device=device, seed=7, proj_size=kw.get("proj_size", 0))
    plain.load_state_dict(layer.state_dict())
    assert rel_error(out, plain(asarray(x), lengths=lengths)[0]) > 1e-3


def _cell_loop(cell, x, h0, step):
    """Run ``step(x_t, state) -> state`` over time, returning the outputs (T, B, H)."""
    state, outs = h0, []
    for t in range(x.shape[0]):
        state = step(x[t], state)
        outs.append(to_numpy(state[0] if isinstance(state, tuple) else state))
    return np.stack(outs)


def test_zoneout_in_evaluation_is_the_expected_mix():
    layer = xprnn.LSTM(I, H, zoneout=(0.2, 0.6), dtype="float64", seed=1).eval()
    cell = xprnn.LSTMCell(I, H, dtype="float64")
    cell.load_state_dict({k: layer.params[f"{k}_l0"] for k in cell.params})
    x = np.random.default_rng(1).standard_normal((T, B, I))
    zeros = np.zeros((B, H))

    def step(x_t, s):
        h, c = cell(x_t, s)
        return 0.2 * s[0] + 0.8 * h, 0.6 * s[1] + 0.4 * c

    want = _cell_loop(cell, x, (zeros, zeros), step)
    np.testing.assert_allclose(to_numpy(layer(x)[0]), want, rtol=1e-12, atol=1e-14)


def test_recurrent_dropout_masks_h_into_the_product_in_training_only():
    p = 0.4
    layer = xprnn.RNN(I, H, recurrent_dropout=p, dtype="float64", seed=5)
    cell = xprnn.RNNCell(I, H, dtype="float64")
    cell.load_state_dict({k: layer.params[f"{k}_l0"] for k in cell.params})
    x = np.random.default_rng(2).standard_normal((T, B, I))
    # the layer's first draw from its stream is the mask: one per sequence, for all steps
    m = (Generator(5).uniform((B, H), "float64") >= p) / (1 - p)
    want = _cell_loop(cell, x, np.zeros((B, H)), lambda x_t, h: cell(x_t, h * m))
    np.testing.assert_allclose(to_numpy(layer(x)[0]), want, rtol=1e-12, atol=1e-14)
    plain = _cell_loop(cell, x, np.zeros((B, H)), cell)
    np.testing.assert_allclose(to_numpy(layer.eval()(x)[0]), plain, rtol=1e-12, atol=1e-14)


def test_noise_is_seeded_and_checked(xp, device, asarray):
    x = asarray(np.random.default_rng(3).standard_normal((T, B, I)), dtype="float32")

    def out(seed):
        return to_numpy(xprnn.GRU(I, H, zoneout=0.5, recurrent_dropout=0.5, xp=xp,
                                  device=device, seed=seed)(x)[0])

    np.testing.assert_array_equal(out(1), out(1))
    assert not np.array_equal(out(1), out(2))
    with pytest.raises(ValueError, match=r"zoneout must be one rate or one per state"):
        xprnn.GRU(I, H, zoneout=(0.1, 0.2))
    with pytest.raises(ValueError, match=r"dropout probability p must be a number in \[0, 1\)"):
        xprnn.LSTM(I, H, recurrent_dropout=1.0)
    layer = xprnn.LSTM(I, H, zoneout=(0.1, 0.2), recurrent_dropout=0.3)
    assert layer.config["zoneout"] == [0.1, 0.2] and layer.config["recurrent_dropout"] == 0.3


def test_cli_options_reach_the_model(tmp_path, capsys, backend):
    if backend != "numpy":
        pytest.skip("the command line runs on NumPy here")
    from xprnn.cli import main

    from .test_cli import _reviews, _write_csv

    data = _write_csv(tmp_path / "d.csv", _reviews(40, 0))
    code = main(["sentiment", "train", "--data", data, "--out", str(tmp_path / "m"), "--cell",
                 "lstm", "--zoneout", "0.1,0.3", "--recurrent-dropout", "0.25", "--epochs", "1",
                 "--hidden", "8", "--embedding-dim", "8", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    rnn = xprnn.load(tmp_path / "m").rnn
    assert rnn.zoneout == (0.1, 0.3) and rnn.recurrent_dropout == 0.25
    code = main(["sentiment", "train", "--data", data, "--out", str(tmp_path / "n"), "--zoneout",
                 "0.1,1.5"])
    assert code == 2 and "a fraction in [0, 1)" in capsys.readouterr().err
