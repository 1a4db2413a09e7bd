"""CuPy's one-launch kernels for the cells (:mod:`xprnn.backend.cupy_kernels`).

- On a GPU (``pytest --backend cupy``; skipped in every other session): each compiled pointwise
  function and its masked variant (variable lengths) against the plain one, float32 and
  float64, one direction and two; and layers with and without the kernels.
- On the CPU (every session): each kernel body, checked to be in the small CUDA C subset the
  kernels are written in and run in NumPy through its plan against the plain function; every
  shipped cell function and its masked variant has its kernel (a changed cell function needs its
  kernel updated); a function without a kernel is declined; importing xprnn does not import
  CuPy.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import array_api_compat.numpy as xnp
import numpy as np
import pytest

import xprnn
from xprnn import backend, cells
from xprnn.backend import cupy_kernels
from xprnn.backend.cupy_kernels import PLANS, compile, known, masked_plan

from ._helpers import rel_error

CELLS = ("rnn", "rnn_relu", "lstm", "gru")
LEADS = {"one direction": (4,), "two directions": (2, 4)}  # the step's leading axes ([D,] B)
H = 5
# Compiled and plain functions compute the same operations on the same values; they differ by
# rounding only: the kernel keeps intermediates in registers and the CUDA compiler contracts
# a * b + c into one fused multiply-add (one rounding instead of two), while the plain function
# rounds every operation's result to memory. A chain of about ten operations, each off by an
# ulp or two of its operands, stays within a small multiple of the dtype's machine epsilon
# (float32 1.2e-7, float64 2.2e-16) of the largest entry; relative to each entry it would not,
# since 1 - n * n and the like cancel. Hence rel_error (max |a - b| / max |b|) < 64 eps.
TOL = {"float32": 64 * float(np.finfo(np.float32).eps),
       "float64": 64 * float(np.finfo(np.float64).eps)}


@pytest.fixture
def gpu(backend):
    if backend != "cupy":
        pytest.skip("compares CuPy kernels on a GPU: runs in the cupy session only")


def _step_arrays(name, lead, dtype, asarray, xp):
    """A cell's forward arguments and, from its plain forward, its backward arguments, with
    constants stacked ``(D, 1, 1)`` for two directions, as the loop passes them."""
    cell = cells.get(name)
    rng = np.random.default_rng(0)
    p = {k: asarray(v.astype(dtype)) for k, v in cell.init(cell.parameters(3, H), H, rng).items()}
    w = cell.prepare(p, xp=xp)

    def consts(cs):
        if len(lead) == 1:
            return tuple(cs)
        return tuple(xp.reshape(xp.stack([c] * lead[0]), (lead[0], 1, 1)) for c in cs)

    def draw(width):
        return asarray((1.5 * rng.standard_normal((*lead, width))).astype(dtype))

    fw_args = (draw(cell.gates * H), draw(cell.gates * H), *(draw(H) for _ in cell.states),
               *consts(w.fw))
    cache = cell.forward(*fw_args, xp=xp)[cell.num_states :]
    bw_args = (*(draw(H) for _ in cell.states), *cache, *consts(w.bw))
    return cell, fw_args, bw_args


def _functions(name, lead, dtype, asarray, xp):
    """``(function, arguments)`` of a cell's forward and backward and of their masked variants,
    the mask ``(B, 1)`` ending two of the four rows, as the loop passes it."""
    cell, fw_args, bw_args = _step_arrays(name, lead, dtype, asarray, xp)
    m = asarray(np.array([True, False, True, False])[:, None])
    d_out = asarray(np.random.default_rng(1).standard_normal(bw_args[0].shape).astype(dtype))
    return [(cell.forward, fw_args), (cell.backward, bw_args),
            (cell.masked_forward, (m, *fw_args)), (cell.masked_backward, (m, d_out, *bw_args))]


def _assert_same(got, want, tol):
    """Same structure (None where the plain function has None, the same object where it returns
    one twice) and values within ``tol``."""
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        assert (g is None) == (w is None), k
        if w is not None:
            assert tuple(g.shape) == tuple(w.shape), k
            assert rel_error(g, w) <= tol, (k, rel_error(g, w))
    assert [[a is b for b in got] for a in got] == [[a is b for b in want] for a in want]


# -- on a GPU ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("lead", list(LEADS))
@pytest.mark.parametrize("name", CELLS)
def test_compiled_functions_equal_the_plain_ones(gpu, xp, asarray, name, lead, dtype):
    for fn, args in _functions(name, LEADS[lead], dtype, asarray, xp):
        compiled = compile(fn, xp=xp, dtype=args[-1].dtype)
        assert compiled is not None, fn
        # and registered: the loop gets it through the seam
        assert backend.pointwise(fn, xp=xp, dtype=args[-1].dtype).__name__ == compiled.__name__
        _assert_same(compiled(*args), fn(*args, xp=xp), TOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_layers_give_the_same_numbers_with_and_without_the_kernels(gpu, xp, asarray, name,
                                                                   dtype):
    from array_api_compat import is_cupy_namespace

    layer = xprnn.Recurrent(name, 3, H, num_layers=2, bidirectional=True, dtype=dtype, xp=xp,
                            seed=0)
    rng = np.random.default_rng(1)
    x = asarray(rng.standard_normal((6, 4, 3)).astype(dtype))
    R = asarray(rng.standard_normal((6, 4, 2 * H)).astype(dtype))

    def run():
        out, _, cache = layer.forward(x, lengths=[6, 3, 1, 5])
        dx, _, grads = layer.backward(cache, R)
        return [out, dx, *(grads[k] for k in sorted(grads))]

    step = backend.pointwise(layer.cell.forward, xp=xp, dtype=layer.dtype)
    assert step.__name__ == known(layer.cell.forward).kernel.name
    step = backend.pointwise(layer.cell.masked_backward, xp=xp, dtype=layer.dtype)
    assert step.__name__ == known(layer.cell.backward).kernel.name + "_masked"
    fused = run()
    backend.unregister_compiler(compile)
    try:
        plain = run()
    finally:
        backend.register_compiler(is_cupy_namespace, compile)
    # a few steps and layers compound the rounding differences: a looser bound than one step's
    for a, b in zip(fused, plain):
        assert rel_error(a, b) < 16 * TOL[dtype]


# -- on the CPU: the kernel bodies in NumPy ------------------------------------------------------

_C_WORDS = {"auto", "bool", "break", "case", "char", "class", "const", "continue", "default",
            "delete", "do", "double", "else", "enum", "false", "float", "for", "half", "if",
            "int", "long", "new", "return", "short", "signed", "sizeof", "static", "struct",
            "switch", "template", "this", "true", "typedef", "typename", "unsigned", "void",
            "volatile", "while", "T", "U"}
_CALLS = {"tanh": np.tanh, "xprnn_where": np.where}


def _statements(kernel):
    """``(name, expression)`` of each statement of ``kernel.body``, checked to be in the subset
    of CUDA C the kernels use: ``T name = expr;`` declares a local, ``out = expr;`` writes an
    output once; an expression reads inputs and earlier locals only (never an output) with
    ``+ - * /``, comparisons, ``tanh`` and ``xprnn_where``, and integer literals only (a float
    literal is a double and would promote float32 arithmetic). A ``bool`` input (a mask) is
    read only as the condition of ``xprnn_where``."""
    names = (*kernel.inputs, *kernel.outputs)
    readable, written, result = set(kernel.inputs), set(), []
    for part in kernel.body.split(";"):
        s = part.strip()
        if not s:
            continue
        m = re.fullmatch(r"(T\s+)?([A-Za-z_]\w*)\s*=\s*([\w\s+\-*/()<>,]+)", s)
        assert m, f"{kernel.name}: not in the subset: {s!r}"
        declares, name, expr = bool(m[1]), m[2], m[3]
        assert not re.search(r"\d\.|\.\d|\d[eEfF]", expr), f"{kernel.name}: float literal {s!r}"
        for ident in re.findall(r"[A-Za-z_]\w*", expr):
            assert ident in readable or ident in _CALLS, f"{kernel.name}: {ident!r} in {s!r}"
        for b in kernel.bools:  # no arithmetic on a bool
            uses = len(re.findall(rf"\b{b}\b", expr))
            assert uses == len(re.findall(rf"xprnn_where\({b},", expr)), f"{kernel.name}: {s!r}"
        if declares:
            assert name not in readable and name not in names, f"{kernel.name}: {name!r} again"
            readable.add(name)
        else:
            assert name in kernel.outputs and name not in written, f"{kernel.name}: {s!r}"
            written.add(name)
        result.append((name, expr))
    assert written == set(kernel.outputs), kernel.name
    for name in (*names, *readable):
        assert name not in ("i", "n") and not name.startswith("_"), f"CuPy reserves {name!r}"
        assert name not in _C_WORDS, f"{kernel.name}: {name!r} is a C/CUDA word"
    return result


def _numpy_run(kernel, *arrays):
    """Run ``kernel`` elementwise in NumPy with CuPy's calling rules: inputs then outputs, one
    dtype for all, outputs of exactly the broadcast shape, no output sharing memory with another
    argument."""
    ins, outs = arrays[: len(kernel.inputs)], arrays[len(kernel.inputs) :]
    assert len(outs) == len(kernel.outputs), kernel.name
    assert set(kernel.bools) <= set(kernel.inputs), kernel.name
    flags = [a for name, a in zip(kernel.inputs, ins) if name in kernel.bools]
    assert all(a.dtype == np.bool_ for a in flags), kernel.name
    assert len({a.dtype for a in arrays if not any(a is f for f in flags)}) == 1, kernel.name
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    assert all(o.shape == shape for o in outs), kernel.name
    for k, o in enumerate(outs):
        assert not any(np.shares_memory(o, a) for j, a in enumerate(arrays)
                       if j != len(ins) + k), kernel.name
    env = dict(zip(kernel.inputs, ins))
    for name, expr in _statements(kernel):
        env[name] = eval(expr, {"__builtins__": {}, **_CALLS}, env)  # our own, checked text
    for name, o in zip(kernel.outputs, outs):
        o[...] = env[name]


def _numpy_empty(shape, like):
    return np.empty(shape, dtype=like.dtype)


def _all_plans():
    """Every plan: the cells' and those of their masked variants."""
    return [*PLANS.values(), *(masked_plan(p, kind) for name, p in PLANS.items()
                               for kind in ("forward", "backward") if name.endswith(kind))]


def test_kernel_bodies_are_in_the_subset_the_kernels_are_written_in():
    plans = _all_plans()
    assert len({p.kernel.name for p in plans}) == len(plans) == 2 * len(PLANS)  # one kernel each
    for plan in plans:
        assert _statements(plan.kernel)
        assert plan.kernel.name.startswith("xprnn_")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("lead", list(LEADS))
@pytest.mark.parametrize("name", CELLS)
def test_kernels_run_in_numpy_equal_the_plain_functions(name, lead, dtype):
    for fn, args in _functions(name, LEADS[lead], dtype, np.asarray, xnp):
        got = known(fn).plan(_numpy_run, _numpy_empty, *args)
        _assert_same(got, fn(*args, xp=xnp), TOL[dtype])


def test_a_plan_declines_arrays_it_was_not_written_for():
    cell, fw_args, _ = _step_arrays("lstm", (4,), "float64", np.asarray, xnp)
    xw, gh, h, c, half = fw_args
    assert known(cell.forward).plan(_numpy_run, _numpy_empty, xw[:, :-1], gh, h, c, half) is None


class _FakeCupy:
    """Stands in for the ``cupy`` module on the CPU: its ``ElementwiseKernel`` parses the
    parameter lists it is given and runs the body in NumPy, counting launches."""

    launches = 0
    ndarray = type("ndarray", (), {})  # array_api_compat asks sys.modules["cupy"] for it

    def __init__(self):
        self.kernels = []

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def ElementwiseKernel(self, in_params, out_params, body, name, *, preamble, no_return):
        def names(params, types=("T", "bool")):
            return tuple(p.split()[1] for p in params.split(", ") if p.split()[0] in types)

        kernel = cupy_kernels.Kernel(name, names(in_params), names(out_params), body,
                                     names(in_params, ("bool",)))
        assert (len(kernel.inputs), len(kernel.outputs)) == (len(in_params.split(",")),
                                                             len(out_params.split(",")))
        assert "xprnn_where" in preamble and no_return
        self.kernels.append(name)

        def launch(*arrays):
            _FakeCupy.launches += 1
            _numpy_run(kernel, *arrays)
        return launch


def _plain_and_fused(run):
    """``run()`` with the plain cell functions, then with the CuPy kernels compiled for NumPy
    arrays (the stand-in for CuPy that the fake module drives)."""
    from array_api_compat import is_numpy_namespace

    plain = run()
    backend.register_compiler(is_numpy_namespace, compile)
    try:
        return plain, run()
    finally:
        backend.unregister_compiler(compile)


def test_compiled_functions_launch_once_per_call_and_serve_the_loop(monkeypatch):
    """``compile`` end to end with a NumPy stand-in for CuPy: one launch per call, the plain
    function's results, a fallback for arrays a plan was not written for, and a bidirectional
    layer with lengths through the seam giving the plain layer's numbers."""

    fake = _FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(cupy_kernels, "_COMPILED", {})
    cell, fw_args, bw_args = _step_arrays("gru", (2, 4), "float32", np.asarray, xnp)
    for fn, args in ((cell.forward, fw_args), (cell.backward, bw_args)):
        compiled = compile(fn, xp=xnp, dtype=args[0].dtype)
        before = _FakeCupy.launches
        _assert_same(compiled(*args), fn(*args, xp=xnp), TOL["float32"])
        assert _FakeCupy.launches == before + 1
    xw, gh, *rest = fw_args  # gh broadcast over the directions: valid, but not for the plan
    fallback = compile(cell.forward, xp=xnp, dtype=xw.dtype)(xw, gh[:1], *rest)
    _assert_same(fallback, cell.forward(xw, gh[:1], *rest, xp=xnp), 0.0)  # the plain function
    assert _FakeCupy.launches == 2

    layer = xprnn.LSTM(3, H, bidirectional=True, dtype="float64", seed=0)
    x = np.random.default_rng(2).standard_normal((6, 4, 3))

    def run():
        out, _, cache = layer.forward(x, lengths=[6, 3, 1, 5])
        dx, _, grads = layer.backward(cache, out)
        return [out, dx, *(grads[k] for k in sorted(grads))]

    plain, fused = _plain_and_fused(run)
    # one per step forward, one per step backward, the masks inside: steps 1 to 5 are masked
    assert _FakeCupy.launches == 2 + 2 * 6
    assert sorted(set(fake.kernels)) == ["xprnn_gru_backward", "xprnn_gru_forward",
                                         "xprnn_lstm_backward", "xprnn_lstm_backward_masked",
                                         "xprnn_lstm_forward", "xprnn_lstm_forward_masked"]
    for a, b in zip(fused, plain):
        assert rel_error(a, b) < TOL["float64"]


@pytest.mark.parametrize("name", ["rnn", "rnn_relu", "gru"])
def test_layers_with_lengths_run_the_masked_kernels(monkeypatch, name):
    """The other cells through the NumPy stand-in for CuPy: a bidirectional layer with lengths
    runs the derived masked kernels and gives the plain layer's numbers (the LSTM: above)."""

    fake = _FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(cupy_kernels, "_COMPILED", {})
    layer = xprnn.Recurrent(name, 3, H, num_layers=2, bidirectional=True, dtype="float64",
                            seed=0)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4, 3))
    R = rng.standard_normal((6, 4, 2 * H))

    def run():
        out, h_n, cache = layer.forward(x, lengths=[6, 3, 1, 5])
        dx, dh0, grads = layer.backward(cache, R)
        return [out, h_n, dx, dh0, *(grads[k] for k in sorted(grads))]

    plain, fused = _plain_and_fused(run)
    prefix = known(cells.get(name).forward).kernel.name.rsplit("_", 1)[0]
    assert sorted(set(fake.kernels)) == sorted(f"{prefix}_{k}{m}" for k in ("backward", "forward")
                                               for m in ("", "_masked"))
    for a, b in zip(fused, plain):
        assert rel_error(a, b) < TOL["float64"]


def test_every_shipped_cell_function_has_its_kernel():
    stale = [f"{f.__module__}.{f.__qualname__}" for name in CELLS
             for f in (cells.get(name).forward, cells.get(name).backward) if known(f) is None]
    assert stale == [], (
        "these cell functions changed since their CuPy kernel was written (or have none): "
        "update the kernel and plan in xprnn/backend/cupy_kernels.py to the new maths, check "
        "this file's NumPy run of it, then set its fingerprint to cupy_kernels.fingerprint(fn)")
    stale = [f"{name}.{f.__name__}" for name in CELLS
             for f in (cells.get(name).masked_forward, cells.get(name).masked_backward)
             if known(f) is None]
    assert stale == [], (
        "the masking in xprnn.cells.base.masked changed since masked_kernel in "
        "xprnn/backend/cupy_kernels.py was written: update it, then MASKING's fingerprints")


def test_functions_without_a_kernel_are_declined():
    def forward(xw, gh, h_prev, *, xp):  # a cell function the module has no kernel for
        return xp.tanh(xw + gh), None

    assert compile(forward, xp=xnp, dtype=np.float32) is None
    forward.__module__, forward.__qualname__ = "xprnn.cells.elman", "tanh_forward"
    assert known(forward) is None  # a known name, but not the source the kernel was written for
    assert compile(cells.get("lstm").forward, xp=xnp, dtype=np.float16) is None


def test_importing_xprnn_registers_the_kernels_without_importing_cupy():
    code = ("import sys, xprnn; from xprnn.backend import kernels, cupy_kernels; "
            "print('cupy' in sys.modules, "
            "any(c is cupy_kernels.compile for _, c in kernels._COMPILERS))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       check=True)
    installed = importlib.util.find_spec("cupy") is not None
    assert r.stdout.split() == ["False", str(installed)]
    assert cupy_kernels.register_if_available.__doc__
