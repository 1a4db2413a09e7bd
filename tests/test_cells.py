"""The cell contract and the time loop, tested directly (not only through the layers).

- one layer of :mod:`xprnn.nn.recurrent` (one direction, or two run together; with and without
  lengths) against float64 central finite differences for the input, the initial state and
  every parameter;
- one step of each registered cell against the textbook equations written independently in
  NumPy (sigmoid through ``exp``), which checks the halved-weights ``tanh`` trick;
- a new cell defined in this file: registered, it runs in ``Recurrent``, a model and a
  checkpoint, and its hand-written backward passes the same finite-difference check.
"""

from __future__ import annotations

import numpy as np
import pytest

import xprnn
from xprnn import cells
from xprnn.backend import device_of, from_numpy, to_numpy
from xprnn.cells.base import Cell, Weights, const
from xprnn.nn.inputs import check_lengths
from xprnn.nn.recurrent import layer_backward, layer_forward, lengths_info

from ._helpers import numeric_grad, rel_error

T, B, I, H = 4, 3, 2, 3


# -- a cell defined outside the library: h = h_prev + a * (tanh(xw + gh) - h_prev) ------------


def _leaky_prepare(p, *, xp):
    b = None if p["bias_ih"] is None else p["bias_ih"] + p["bias_hh"]
    W_hh = p["weight_hh"]
    a = const(0.25, W_hh, xp=xp)  # a fixed leak: the state moves a quarter of the way
    return Weights(xp.matrix_transpose(p["weight_ih"]), b, xp.matrix_transpose(W_hh), None,
                   W_hh, (a,), (a, const(1.0, W_hh, xp=xp)))


def _leaky_forward(xw, gh, h_prev, a, *, xp):
    n = xp.tanh(xw + gh)
    h = h_prev + a * (n - h_prev)
    return h, n


def _leaky_backward(dh, n, a, one, *, xp):
    dz = dh * a * (one - n * n)  # through h = (1 - a) h_prev + a n, then tanh
    return dz, dz, dh * (one - a)


LEAKY = Cell("test_leaky", 1, ("h",), _leaky_prepare, _leaky_forward, _leaky_backward)


@pytest.fixture(scope="module", autouse=True)
def _leaky_registered():
    cells.register(LEAKY)
    yield
    cells.base._CELLS.pop(LEAKY.name, None)


def _device(asarray):
    return device_of(asarray(np.zeros(1)))


def _params(cell, rng, asarray, bias=True):
    shapes = cell.parameters(I, H, bias)
    return {k: rng.uniform(-0.6, 0.6, s) for k, s in shapes.items()}


@pytest.mark.parametrize("name", ["rnn", "rnn_relu", "lstm", "gru", "test_leaky"])
@pytest.mark.parametrize("directions", [1, 2])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_layer_loop_matches_finite_differences(xp, asarray, name, directions, with_lengths):
    """One layer of the loop (one direction, or two advancing together) by itself."""
    cell = cells.get(name)
    rng = np.random.default_rng(11)
    ps_np = [_params(cell, rng, asarray) for _ in range(directions)]
    x_np = rng.standard_normal((T, B, I))
    s_np = [rng.standard_normal((directions, B, H)) * 0.5 for _ in cell.states]
    R = rng.standard_normal((T, B, directions * H))
    S = [rng.standard_normal((directions, B, H)) for _ in cell.states]
    n = check_lengths([T, 2, 3], T, B) if with_lengths else None

    def run(ps, x, s, keep):
        lens = None if n is None else lengths_info(from_numpy(n, xp, _device(asarray)), n, T,
                                                   xp=xp)
        return layer_forward(cell, [{k: asarray(v) for k, v in p.items()} for p in ps],
                             asarray(x), tuple(asarray(v) for v in s), lens, keep, xp=xp)

    def loss(ps, x, s):
        out, state, _ = run(ps, x, s, False)
        return float(np.sum(to_numpy(out) * R)) + sum(
            float(np.sum(to_numpy(a) * w)) for a, w in zip(state, S))

    _, _, cache = run(ps_np, x_np, s_np, True)
    dx, ds0, grads = layer_backward(cache, asarray(R), tuple(asarray(w) for w in S), xp=xp)
    assert rel_error(dx, numeric_grad(lambda v: loss(ps_np, v, s_np), x_np)) < 1e-6
    for i in range(len(s_np)):
        def f(v, i=i):
            s = list(s_np)
            s[i] = v
            return loss(ps_np, x_np, s)
        assert rel_error(ds0[i], numeric_grad(f, s_np[i])) < 1e-6, cell.states[i]
    assert len(grads) == directions
    for d, p_np in enumerate(ps_np):
        assert set(grads[d]) == set(p_np)
        for k in p_np:
            def g(v, k=k, d=d):
                ps = list(ps_np)
                ps[d] = {**ps_np[d], k: v}
                return loss(ps, x_np, s_np)
            assert rel_error(grads[d][k], numeric_grad(g, p_np[k])) < 1e-6, (d, k)


def _sigmoid(u):
    return 1.0 / (1.0 + np.exp(-u))


def _textbook_step(name, p, x, state):
    """One step from the equations in torch.nn's documentation, in NumPy float64."""
    gi = x @ p["weight_ih"].T + p["bias_ih"]
    gh = state[0] @ p["weight_hh"].T + p["bias_hh"]
    if name == "rnn":
        return (np.tanh(gi + gh),)
    if name == "rnn_relu":
        return (np.maximum(gi + gh, 0.0),)
    if name == "lstm":
        i, f, g, o = np.split(gi + gh, 4, axis=-1)
        c = _sigmoid(f) * state[1] + _sigmoid(i) * np.tanh(g)
        return _sigmoid(o) * np.tanh(c), c
    r_i, z_i, n_i = np.split(gi, 3, axis=-1)
    r_h, z_h, n_h = np.split(gh, 3, axis=-1)
    r, z = _sigmoid(r_i + r_h), _sigmoid(z_i + z_h)
    n = np.tanh(n_i + r * n_h)
    return ((1 - z) * n + z * state[0],)


@pytest.mark.parametrize("name", ["rnn", "rnn_relu", "lstm", "gru"])
def test_one_step_matches_the_textbook_equations(xp, asarray, name):
    cell = cells.get(name)
    rng = np.random.default_rng(5)
    p_np = _params(cell, rng, asarray)
    x = rng.standard_normal((B, I)) * 2
    state = [rng.standard_normal((B, H)) for _ in cell.states]
    w = cell.prepare({k: asarray(v) for k, v in p_np.items()}, xp=xp)
    xw = asarray(x) @ w.W_in + w.b_in
    h = asarray(state[0])
    gh = h @ w.W_rec if w.b_rec is None else h @ w.W_rec + w.b_rec
    res = cell.forward(xw, gh, *(asarray(s) for s in state), *w.fw, xp=xp)
    for got, want in zip(res[: cell.num_states], _textbook_step(name, p_np, x, state)):
        assert rel_error(got, want) < 1e-13


def test_registry_names_and_errors():
    assert {"rnn", "rnn_relu", "lstm", "gru"} <= set(cells.names())
    with pytest.raises(ValueError, match="cell must be one of .*'lstm'.*got 'lstn'"):
        cells.get("lstn")
    with pytest.raises(TypeError, match="register expects a Cell"):
        cells.register("lstm")


def test_new_cell_runs_in_layers_models_and_checkpoints(xp, asarray, tmp_path):
    device = _device(asarray)
    layer = xprnn.Recurrent("test_leaky", I, H, num_layers=2, bidirectional=True,
                            dtype="float64", xp=xp, device=device, seed=0)
    assert set(layer.state_dict()) == {f"{k}_l{n}{s}" for k in LEAKY.parameters(1, 1)
                                       for n in (0, 1) for s in ("", "_reverse")}
    x = np.random.default_rng(0).standard_normal((T, B, I))
    out, h_n, cache = layer.forward(asarray(x), lengths=[T, 1, 2])
    R = np.random.default_rng(1).standard_normal(tuple(out.shape))
    dx, _, grads = layer.backward(cache, asarray(R))

    def loss(v):
        return float(np.sum(to_numpy(layer(asarray(v), lengths=[T, 1, 2])[0]) * R))

    assert rel_error(dx, numeric_grad(loss, x)) < 1e-6
    assert set(grads) == set(layer.params)
    again = xprnn.load(xprnn.save(layer, tmp_path / "leaky"), xp=xp, device=device)
    assert type(again) is xprnn.Recurrent and again.cell is LEAKY
    np.testing.assert_array_equal(to_numpy(again(asarray(x))[0]), to_numpy(layer(asarray(x))[0]))
    model = xprnn.SequenceClassifier(20, 4, H, 2, cell="test_leaky", xp=xp, device=device,
                                     seed=0)
    loss_value, g, _ = model.loss(np.array([[1, 2, 3]]), [3], np.array([1]))
    assert np.isfinite(float(loss_value)) and set(g) == set(model.state_dict())
