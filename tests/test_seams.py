"""The seams: the kernel seam a backend compiles pointwise functions through, the public
on-device update, the one training step and its gradient hook, and the module registry."""

from __future__ import annotations

import numpy as np
import pytest

import xprnn
from xprnn import backend, cells
from xprnn.backend import device_of, to_numpy
from xprnn.nn.module import Module
from xprnn.optim import SGD


def _device(asarray):
    return device_of(asarray(np.zeros(1)))


class _Recorder:
    """A 'compiler' for the backend under test that records what it was asked for and wraps
    each function so that its calls are counted (and then runs the plain function)."""

    def __init__(self, xp, decline=False):
        self.xp, self.decline, self.asked, self.calls = xp, decline, [], {}

    def applies(self, xp):
        return xp is self.xp

    def compile(self, fn, *, xp, dtype):
        self.asked.append((fn, xp.__name__, str(dtype)))
        if self.decline:
            return None

        def compiled(*arrays):
            self.calls[fn] = self.calls.get(fn, 0) + 1
            return fn(*arrays, xp=xp)

        return compiled


@pytest.mark.parametrize("decline", [False, True])
def test_loop_runs_each_pointwise_function_through_the_kernel_seam(xp, asarray, decline):
    layer = xprnn.LSTM(3, 4, bidirectional=True, dtype="float64", xp=xp,
                       device=_device(asarray), seed=0)
    x = asarray(np.random.default_rng(0).standard_normal((5, 2, 3)))
    out_ref, _, cache = layer.forward(x)
    dx_ref, _, g_ref = layer.backward(cache, out_ref)
    rec = _Recorder(xp, decline)
    backend.register_compiler(rec.applies, rec.compile)
    try:
        out, _, cache = layer.forward(x)
        dx, _, g = layer.backward(cache, out)
        layer.forward(x, keep=False)  # compiled once, then taken from the cache
    finally:
        backend.unregister_compiler(rec.compile)
    lstm = cells.get("lstm")
    assert sorted(f.__name__ for f, _, _ in rec.asked) == ["backward", "forward"]
    assert {f for f, _, _ in rec.asked} == {lstm.forward, lstm.backward}
    assert all(d == str(x.dtype) for _, _, d in rec.asked)
    # two forward passes and one backward of five steps, both directions advancing in one call
    # per step; a compiler that declines leaves the plain function
    want = {} if decline else {lstm.forward: 2 * 5, lstm.backward: 5}
    assert rec.calls == want
    from array_api_compat import is_cupy_namespace

    # bit for bit, except on CuPy, whose reference ran through xprnn's one-launch kernels
    # (backend/cupy_kernels.py): they fuse a * b + c into one rounding and keep intermediates in
    # registers, so they agree with the plain functions to float64 rounding only
    tol = {"rtol": 1e-12, "atol": 1e-14} if is_cupy_namespace(xp) else {"rtol": 0, "atol": 0}
    np.testing.assert_allclose(to_numpy(out), to_numpy(out_ref), **tol)
    np.testing.assert_allclose(to_numpy(dx), to_numpy(dx_ref), **tol)
    for k in g_ref:
        np.testing.assert_allclose(to_numpy(g[k]), to_numpy(g_ref[k]), err_msg=k, **tol)


def test_with_lengths_the_masks_run_inside_the_cell_functions(xp, asarray):
    # steps where some row has ended run the cell's masked variants (xprnn.cells.base.masked):
    # one pointwise call per step still, forward and backward, the select inside it
    layer = xprnn.GRU(3, 4, bidirectional=True, dtype="float64", xp=xp,
                      device=_device(asarray), seed=0)
    x = asarray(np.random.default_rng(0).standard_normal((5, 3, 3)))
    lengths = [5, 2, 4]  # steps 0 and 1 are full, steps 2 to 4 masked
    rec = _Recorder(xp)
    backend.register_compiler(rec.applies, rec.compile)
    try:
        out, h_n, cache = layer.forward(x, lengths=lengths)
        layer.backward(cache, out)
    finally:
        backend.unregister_compiler(rec.compile)
    gru = cells.get("gru")
    assert rec.calls == {gru.forward: 2, gru.masked_forward: 3, gru.backward: 2,
                         gru.masked_backward: 3}
    out = to_numpy(out)
    assert np.all(out[2:, 1] == 0) and np.all(out[4:, 2] == 0)  # padded outputs are zero
    np.testing.assert_array_equal(to_numpy(h_n)[0, 1], out[1, 1, :4])  # the last valid state


@pytest.mark.parametrize("name", ["rnn", "rnn_relu", "lstm", "gru"])
def test_masked_cell_functions_select_around_the_plain_ones(xp, asarray, name):
    cell = cells.get(name)
    rng = np.random.default_rng(1)
    B, H = 4, 3
    p = {k: asarray(v) for k, v in cell.init(cell.parameters(2, H), H, rng).items()}
    w = cell.prepare(p, xp=xp)

    def draw(*shape):
        return asarray(rng.standard_normal(shape))

    m_np = np.array([True, False, True, False])[:, None]
    m = asarray(m_np)
    state = tuple(draw(B, H) for _ in cell.states)
    fw_args = (draw(B, cell.gates * H), draw(B, cell.gates * H), *state, *w.fw)
    res = cell.forward(*fw_args, xp=xp)
    got = cell.masked_forward(m, *fw_args, xp=xp)
    ns = cell.num_states
    for new, old, g in zip(res[:ns], state, got[:ns]):  # ended rows keep their state
        np.testing.assert_array_equal(to_numpy(g), np.where(m_np, to_numpy(new), to_numpy(old)))
    np.testing.assert_array_equal(to_numpy(got[ns]), np.where(m_np, to_numpy(res[0]), 0.0))
    for g, c in zip(got[ns + 1 :], res[ns:]):  # the cell's own cache
        np.testing.assert_array_equal(to_numpy(g), to_numpy(c))

    dstate, d_out = tuple(draw(B, H) for _ in cell.states), draw(B, H)
    bw_args = (*res[ns:], *w.bw)
    got = cell.masked_backward(m, d_out, *dstate, *bw_args, xp=xp)
    want = cell.backward(dstate[0] + d_out, *dstate[1:], *bw_args, xp=xp)
    for k in (0, 1):  # ended rows: no gradient for the products, for a finite cache
        np.testing.assert_allclose(to_numpy(got[k]),
                                   np.where(m_np, to_numpy(want[k]), 0.0), rtol=1e-12)
    assert (got[0] is got[1]) == (want[0] is want[1])
    direct = 0.0 if want[2] is None else to_numpy(want[2])
    np.testing.assert_allclose(to_numpy(got[2]), np.where(m_np, direct, to_numpy(dstate[0])),
                               rtol=1e-12)
    for g, w_, d in zip(got[3:], want[3:], dstate[1:]):  # and pass the state's gradient on
        np.testing.assert_allclose(to_numpy(g), np.where(m_np, to_numpy(w_), to_numpy(d)),
                                   rtol=1e-12)


def test_update_swaps_arrays_without_copies_and_checks_them(xp, asarray):
    model = xprnn.SequenceClassifier(10, 3, 4, 2, cell="gru", xp=xp, device=_device(asarray),
                                     seed=0)
    before = model.state_dict()
    new = {k: v * 2 for k, v in before.items() if k.startswith("rnn.")}
    assert model.update(new) is model
    after = model.state_dict()
    assert all(after[k] is new[k] for k in new)  # the very arrays: nothing went to the host
    assert all(after[k] is before[k] for k in before if k not in new)
    with pytest.raises(KeyError, match="no parameters .*'rnn.nope'"):
        model.update({"rnn.nope": new["rnn.weight_ih_l0"]})
    bad = asarray(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"'fc.bias'\] has shape \(2, 2\), expected \(2,\)"):
        model.update({"fc.weight": after["fc.weight"] * 0, "fc.bias": bad})
    assert model.state_dict()["fc.weight"] is after["fc.weight"]  # nothing changed
    with pytest.raises(TypeError, match="dtype float64, expected float32"):
        model.update({"fc.bias": asarray(np.zeros(2), dtype="float64")})
    with pytest.raises(TypeError, match=r"params\['fc.bias'\] must be an array"):
        model.update({"fc.bias": [0.0, 0.0]})


def test_train_step_order_hook_clip_optimizer_update(xp, asarray):
    model = xprnn.SequenceClassifier(10, 3, 4, 2, xp=xp, device=_device(asarray), seed=1)
    batch = (np.array([[1, 2, 3], [4, 5, 0]]), [3, 2], np.array([0, 1]))
    _, grads, _ = model.loss(*batch)
    before = {k: to_numpy(v) for k, v in model.state_dict().items()}
    seen = []

    def hook(g):  # e.g. an all-reduce; here: record, then double every gradient
        seen.append({k: to_numpy(v) for k, v in g.items()})
        return {k: v * 2 for k, v in g.items()}

    result = xprnn.train_step(model, batch, SGD(lr=0.5), clip=1e9, grad_hook=hook)
    for k, v in grads.items():
        np.testing.assert_array_equal(seen[0][k], to_numpy(v), err_msg=k)
    assert result.carry is None and np.isfinite(result.loss)
    # the norm clipping saw is that of the hook's output: twice the raw norm
    raw = np.sqrt(sum(np.sum(to_numpy(g).astype(np.float64) ** 2) for g in grads.values()))
    assert result.grad_norm == pytest.approx(2 * raw, rel=1e-5)
    after = model.state_dict()
    for k, v in grads.items():  # SGD: p - lr * (2 g)
        np.testing.assert_allclose(to_numpy(after[k]), before[k] - 0.5 * 2 * to_numpy(v),
                                   rtol=1e-5, atol=1e-6, err_msg=k)
        assert device_of(after[k]) == _device(asarray)


def test_train_step_leaves_parameters_on_a_non_finite_loss(xp, asarray):
    model = xprnn.LanguageModel(6, 4, 4, cell="rnn", xp=xp, device=_device(asarray), seed=0)
    big = {k: v * float("nan") for k, v in model.state_dict().items()}
    model.update(big)
    before = model.state_dict()
    with pytest.raises(xprnn.TrainingDiverged, match="non-finite loss"):
        xprnn.train_step(model, (np.array([[1, 2]]), np.array([[2, 3]])), SGD(lr=0.1))
    assert all(model.state_dict()[k] is v for k, v in before.items())


def test_modules_register_themselves_with_their_config():
    for name in ("RNN", "LSTM", "GRU", "Recurrent", "Linear", "Embedding", "Dropout",
                 "SequenceClassifier", "LanguageModel"):
        assert Module.registered(name).__name__ == name
    assert Module.registered("_FixedCell") is None

    class Scaler(Module):  # a user's module: registered by being defined
        def __init__(self, n, **kw):
            self._setup({"w": np.ones(n)}, config={"n": n}, **kw)

    try:
        assert Module.registered("Scaler") is Scaler
        assert Scaler(3).config == {"n": 3}
    finally:
        Module.registered()  # a copy: the registry itself is not exposed
        from xprnn.nn import module as m
        m._REGISTRY.pop("Scaler", None)
    lstm = xprnn.LSTM(2, 3, num_layers=2, bidirectional=True)
    assert lstm.config == {"input_size": 2, "hidden_size": 3, "num_layers": 2, "bias": True,
                           "batch_first": False, "dropout": 0.0, "bidirectional": True}
    assert xprnn.RNN(2, 3, nonlinearity="relu").config["nonlinearity"] == "relu"
    assert xprnn.Recurrent("gru", 2, 3).config["cell"] == "gru"


def test_optimizer_state_follows_the_model_to_another_backend(xp, asarray, backend):
    """Adam's moments live beside the parameters; after ``model.to`` a step says what to do,
    and ``optimizer.to`` moves them so training goes on with the same numbers."""
    if backend == "numpy":
        other = pytest.importorskip("array_api_strict")
    else:
        other = np
    from xprnn.optim import Adam

    batch = (np.array([[1, 2, 3], [4, 5, 0]]), [3, 2], np.array([0, 1]))
    ref = xprnn.SequenceClassifier(10, 3, 4, 2, dtype="float64", seed=2).to(other)
    model = xprnn.SequenceClassifier(10, 3, 4, 2, dtype="float64", xp=xp,
                                     device=_device(asarray), seed=2)
    opt, opt_ref = Adam(lr=0.1), Adam(lr=0.1)
    xprnn.train_step(model, batch, opt)
    xprnn.train_step(ref, batch, opt_ref)
    model.to(other)
    with pytest.raises(TypeError, match=r"optimizer state .*call optimizer.to\(\.\.\.\)"):
        xprnn.train_step(model, batch, opt)
    opt.to(other)
    xprnn.train_step(model, batch, opt)
    xprnn.train_step(ref, batch, opt_ref)
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(to_numpy(model.state_dict()[k]), to_numpy(v), rtol=1e-12,
                                   err_msg=k)
