"""Backend calls per time step of one recurrent layer: what a GPU pays a launch for.

On a GPU every array call is a kernel launch of 10-30 us from Python, so at RNN sizes the calls
per step, not the flops, set the speed. This counts them on the CPU: the layer runs on NumPy
arrays of a counting subclass, whose ``__array_ufunc__`` and ``__array_function__`` count every
ufunc (matmul included) and every array function, while views (indexing, slicing, reshape,
transpose, flip) count nothing, as on CuPy. The cells' pointwise functions reach the loop through
the kernel seam (:func:`xprnn.backend.pointwise`); here a compiler registered for NumPy hands
back stand-ins for compiled kernels, which count one call and then run the plain function on
plain arrays, as CuPy's one-launch kernels (:mod:`xprnn.backend.cupy_kernels`) will.

Per step = (calls at T = 2 T0 - calls at T = T0) / T0, so everything done once per call (input
projection, weight gradients, stacking) cancels. "With lengths" is the worst case, a batch whose
shortest row has one step, so every step but the first carries a mask: those steps call the
cells' masked variants (:func:`xprnn.cells.base.masked`), which apply the mask inside the one
compiled call. Method calls
(``x.astype``, ``x.copy``) and array creation without an array argument (``xp.zeros``) are not
seen; the time loop uses neither.

    python benchmarks/count_launches.py [--markdown PATH] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from array_api_compat import is_numpy_namespace

import xprnn
from xprnn import backend

__all__ = ["count", "per_step", "table", "markdown", "TARGETS"]

# bidirectional LSTM layer, per step (GPU issue): forward <= 3, backward <= 5
TARGETS = {("LSTM", True): (3, 5)}
_VIEWS = {"reshape", "transpose", "swapaxes", "moveaxis", "flip", "expand_dims", "squeeze",
          "broadcast_to", "broadcast_arrays", "permute_dims", "matrix_transpose", "ravel",
          "result_type", "shape", "ndim", "size", "can_cast", "may_share_memory",
          "shares_memory", "iscomplexobj", "isrealobj"}
_CALLS = [0]


def _plain(a):
    if isinstance(a, Counted):
        return a.view(np.ndarray)
    if isinstance(a, (list, tuple)):
        return type(a)(_plain(b) for b in a)
    return a


def _counted(a, memo=None):
    if memo is not None and id(a) in memo:  # keep identity: (dz, dz) stays one object
        return memo[id(a)]
    if isinstance(a, np.ndarray):
        out = a.view(Counted)
    elif isinstance(a, np.generic):
        out = np.asarray(a).view(Counted)
    elif isinstance(a, tuple):
        out = tuple(_counted(b, memo) for b in a)
    else:
        out = a
    if memo is not None:
        memo[id(a)] = out
    return out


class Counted(np.ndarray):
    """A NumPy array that counts every ufunc call and array function it takes part in."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        _CALLS[0] += 1
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        return _counted(getattr(ufunc, method)(*_plain(inputs), **kwargs))

    def __array_function__(self, func, types, args, kwargs):
        if func.__name__ not in _VIEWS:
            _CALLS[0] += 1
        res = func(*_plain(args), **{k: _plain(v) for k, v in kwargs.items()})
        return _counted(res) if func.__name__ not in ("shape", "ndim", "size") else res


def _stand_in(fn, *, xp, dtype):
    """A 'compiled' pointwise function: one call, then the plain function on plain arrays."""
    def compiled(*arrays):
        _CALLS[0] += 1
        return _counted(fn(*_plain(arrays), xp=xp), memo={})
    return compiled


def _layer_calls(cell, bidirectional, T, with_lengths, B=3, I=4, H=5):
    """(forward calls, backward calls) of one layer over T steps."""
    layer = getattr(xprnn, cell)(I, H, bidirectional=bidirectional, dtype="float64", seed=0)
    layer.update({k: _counted(v) for k, v in layer.state_dict().items()})
    rng = np.random.default_rng(0)
    D = 2 if bidirectional else 1
    x = _counted(rng.standard_normal((T, B, I)))
    zeros = _counted(np.zeros((D, B, H)))
    h0 = (zeros, zeros) if cell == "LSTM" else zeros
    lengths = [T, 1] + [T] * (B - 2) if with_lengths else None
    R = _counted(rng.standard_normal((T, B, D * H)))
    _CALLS[0] = 0
    out, _, cache = layer.forward(x, h0, lengths)
    fwd = _CALLS[0]
    _CALLS[0] = 0
    layer.backward(cache, R)
    return fwd, _CALLS[0]


def count(cell, bidirectional, with_lengths, T):
    """Calls of one layer's forward and backward over ``T`` steps, the pointwise functions
    counting one each."""
    backend.register_compiler(is_numpy_namespace, _stand_in)
    try:
        return _layer_calls(cell, bidirectional, T, with_lengths)
    finally:
        backend.unregister_compiler(_stand_in)


def per_step(cell, bidirectional, with_lengths, T0=8):
    """``(forward, backward)`` calls per time step: (calls at 2 T0 - calls at T0) / T0."""
    a = count(cell, bidirectional, with_lengths, T0)
    b = count(cell, bidirectional, with_lengths, 2 * T0)
    return tuple((y - x) / T0 for x, y in zip(a, b))


def table(T0=8):
    rows = []
    for cell in ("RNN", "LSTM", "GRU"):
        for bidirectional in (False, True):
            for with_lengths in (False, True):
                fwd, bwd = per_step(cell, bidirectional, with_lengths, T0)
                rows.append({"cell": cell, "bidirectional": bidirectional,
                             "lengths": with_lengths, "forward": fwd, "backward": bwd,
                             "target": TARGETS.get((cell, bidirectional))})
    return rows


def _n(v):
    return f"{v:g}"


def markdown(rows):
    lines = ["| cell | directions | lengths | forward calls / step | backward calls / step "
             "| target (fwd, bwd) |", "|---|---:|---|---:|---:|---|"]
    for r in rows:
        t = r["target"]
        target = "" if t is None else f"<= {t[0]}, <= {t[1]}"
        if t is not None and (r["forward"] > t[0] or r["backward"] > t[1]):
            target += " **MISS**"
        lines.append(f"| {r['cell']} | {2 if r['bidirectional'] else 1} | "
                     f"{'every step masked' if r['lengths'] else 'none'} | {_n(r['forward'])} | "
                     f"{_n(r['backward'])} | {target} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = table()
    text = markdown(rows)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
