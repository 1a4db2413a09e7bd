"""Time xprnn's RNN, LSTM and GRU layers against ``torch.nn`` and a notebook-style NumPy RNN.

For every shape (B, T, I, H), cell and mode (``forward``: output only; ``train``: forward plus
backward of ``sum(out * R)`` with ``R`` fixed, including the gradient of the input) the
contenders run interleaved in one process, round by round after a warm-up, and each one's median
over the rounds is reported. Also reported: xprnn's GFLOP/s and its share of a large float32
matrix product measured in the same run, and the bytes xprnn's BPTT cache holds against the bytes
it must hold (the states of every step). See ``benchmarks/README.md`` for the formulas.

A third contender, ``products``, runs only the matrix products of xprnn's step (the input
projection, one recurrent product per step, and in training the per-step ``dgh @ W_hh`` and the
three products after the loop), with the same shapes and layouts on the same backend: no cell can
make xprnn faster than that, so ``products/torch`` is the lowest ratio this backend's BLAS allows.

Run from the repository root, e.g.::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_layers.py
    python benchmarks/bench_layers.py --quick
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
from pathlib import Path

import numpy as np
from _timing import (
    add_malloc_option,
    apply_malloc,
    cache_bytes,
    environment,
    interleaved,
    loadavg,
    matmul_gflops,
    median_ms,
    products,
    traced_peak,
)
from threadpoolctl import threadpool_limits

import xprnn

try:
    import torch
except ImportError:  # the torch column is then left empty
    torch = None

REPO = Path(__file__).resolve().parent.parent
SHAPES = [(64, 100, 128, 256), (32, 200, 64, 128), (128, 50, 300, 512), (1, 1000, 32, 64)]
QUICK_SHAPES = [(8, 20, 16, 32), (1, 50, 8, 16)]
CELLS = ("RNN", "LSTM", "GRU")
MODES = ("forward", "train")
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
STATES = {"RNN": 1, "LSTM": 2, "GRU": 1}
NOISY = 3.0  # a contender whose slowest round took this many times its fastest is flagged


def target(shape, cell, mode):
    """The xprnn/torch ratio this row must reach, as ``(limit, strict)``, or None."""
    if shape == (1, 1000, 32, 64):
        return (2.0, False) if cell == "LSTM" else (1.0, True)
    if shape in SHAPES:
        return (1.0 if mode == "train" else 1.3, False)
    return None


def forward_flops(B, T, I, H, G):
    """Flops of the forward matrix products: input projection and recurrent product."""
    return 2 * T * B * G * H * (I + H)


# -- the notebook contender: h_t = tanh(W_hh h_{t-1} + W_xh x_t + b_h), columns are samples -----
def notebook_forward(x, W_xh, W_hh, b_h, *, m):
    """Per-step forward as written in the seed notebook; returns ``[h_0, h_1, ..., h_T]``, each
    ``(H, B)``."""
    h = m.zeros((W_hh.shape[0], x.shape[1]), dtype=x.dtype)
    hs = [h]
    for t in range(x.shape[0]):
        h = m.tanh(W_hh @ h + W_xh @ x[t].T + b_h)
        hs.append(h)
    return hs


def notebook_backward(x, hs, R, W_xh, W_hh, *, m):
    """BPTT of ``sum(out * R)`` for :func:`notebook_forward` (min-char-rnn style)."""
    dW_xh, dW_hh = m.zeros_like(W_xh), m.zeros_like(W_hh)
    db = m.zeros((W_hh.shape[0], 1), dtype=x.dtype)
    dx = m.empty_like(x)
    dh_next = m.zeros_like(hs[0])
    for t in range(x.shape[0] - 1, -1, -1):
        dh = R[t].T + dh_next
        draw = (1 - hs[t + 1] * hs[t + 1]) * dh  # backprop through tanh
        db += draw.sum(axis=1, keepdims=True)
        dW_xh += draw @ x[t]
        dW_hh += draw @ hs[t].T
        dx[t] = (W_xh.T @ draw).T
        dh_next = W_hh.T @ draw
    return dx, dh_next, dW_xh, dW_hh, db


def notebook_out(hs, *, m):
    return m.stack(hs[1:]).transpose(0, 2, 1)  # (T, B, H)


# -- building the contenders of one row ---------------------------------------------------------
class Row:
    """Layers, data and the timed callables for one (shape, cell)."""

    def __init__(self, shape, cell, *, xp, torch_device):
        B, T, I, H = shape
        rng = np.random.default_rng(0)
        x_np = rng.standard_normal((T, B, I)).astype(np.float32)
        R_np = rng.standard_normal((T, B, H)).astype(np.float32)
        self.xp, self.shape, self.cell = xp, shape, cell
        self.x, self.R = xp.asarray(x_np), xp.asarray(R_np)
        kw = {} if xp is np else {"xp": xp}
        self.layer = getattr(xprnn, cell)(I, H, dtype=np.float32, seed=0, **kw)
        if torch is not None:
            torch.manual_seed(0)
            self.tl = getattr(torch.nn, cell)(I, H).to(torch_device, torch.float32)
            state = {k: v.detach().cpu().numpy() for k, v in self.tl.state_dict().items()}
            self.xt = torch.from_numpy(x_np).to(torch_device)
            self.Rt = torch.from_numpy(R_np).to(torch_device)
        else:
            self.tl = None
            state = {k: np.asarray(v) for k, v in self.layer.state_dict().items()}
        self.layer.load_state_dict(state)
        self.products = products(xp, shape, GATES[cell])
        if cell == "RNN":
            self.nb = {
                "W_xh": xp.asarray(state["weight_ih_l0"]),
                "W_hh": xp.asarray(state["weight_hh_l0"]),
                "b_h": xp.asarray((state["bias_ih_l0"] + state["bias_hh_l0"])[:, None]),
            }

    # xprnn
    def xprnn_forward(self):
        return self.layer(self.x)

    def xprnn_train(self):
        out, _, cache = self.layer.forward(self.x)
        return out, self.layer.backward(cache, self.R)

    # torch
    def torch_forward(self):
        with torch.no_grad():
            return self.tl(self.xt)

    def torch_train(self):
        self.tl.zero_grad(set_to_none=True)
        x = self.xt.detach().requires_grad_()
        out, _ = self.tl(x)
        out.backward(self.Rt)
        return out, x.grad

    # notebook (RNN only)
    def notebook_forward(self):
        nb = self.nb
        return notebook_out(notebook_forward(self.x, nb["W_xh"], nb["W_hh"], nb["b_h"],
                                             m=self.xp), m=self.xp)

    def notebook_train(self):
        nb, m = self.nb, self.xp
        hs = notebook_forward(self.x, nb["W_xh"], nb["W_hh"], nb["b_h"], m=m)
        out = notebook_out(hs, m=m)
        return out, notebook_backward(self.x, hs, self.R, nb["W_xh"], nb["W_hh"], m=m)

    def contenders(self, mode):
        c = {"xprnn": getattr(self, f"xprnn_{mode}"), "products": self.products[mode]}
        if self.tl is not None:
            c["torch"] = getattr(self, f"torch_{mode}")
        if self.cell == "RNN":
            c["notebook"] = getattr(self, f"notebook_{mode}")
        return c

    def check(self):
        """Largest relative difference (max |a - b| / max |b|) of ``out``, ``dx`` and the
        gradient of ``weight_hh_l0`` between xprnn and each other contender: the benchmark must
        compare equal computations."""
        def to_np(a):  # NumPy, or CuPy (whose arrays copy to the host with .get())
            return np.asarray(a.get() if hasattr(a, "get") else a)

        out, (dx, _, grads) = self.xprnn_train()
        ours = [to_np(out), to_np(dx), to_np(grads["weight_hh_l0"])]
        others = {}
        if self.tl is not None:
            o, g = self.torch_train()
            others["torch"] = [t.detach().cpu().numpy() for t in (o, g, self.tl.weight_hh_l0.grad)]
        if self.cell == "RNN":
            o, (g, _, _, dW_hh, _) = self.notebook_train()
            others["notebook"] = [to_np(o), to_np(g), to_np(dW_hh)]
        return {
            name: max(float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))
                      for a, b in zip(ours, theirs, strict=True))
            for name, theirs in others.items()
        }

    def memory(self):
        """``(cache bytes, must-hold bytes)`` of one forward's BPTT cache."""
        B, T, _, H = self.shape
        _, _, cache = self.layer.forward(self.x)
        exclude = [*self.layer.state_dict().values(), self.x]
        must = T * B * H * np.dtype(np.float32).itemsize * STATES[self.cell]
        return cache_bytes(cache, exclude), must


# -- the run -----------------------------------------------------------------------------------
def run(args, xp, sync, torch_device):
    rows = []
    for shape in args.shapes:
        for cell in args.cells:
            row = Row(shape, cell, xp=xp, torch_device=torch_device)
            err = row.check()
            for name, e in err.items():
                if e > 1e-3:
                    print(f"WARNING {shape} {cell}: xprnn and {name} differ by {e:.2e}",
                          file=sys.stderr)
            cache_b, must_b = row.memory()
            for mode in args.modes:
                fns = row.contenders(mode)
                if args.profile:
                    profile(fns["xprnn"], f"{shape} {cell} {mode}")
                    continue
                times = interleaved(fns, repeats=args.repeats, warmup=args.warmup, sync=sync,
                                    pause=args.pause)
                ms = {k: median_ms(v) for k, v in times.items()}
                B, T, I, H = shape
                flops = forward_flops(B, T, I, H, GATES[cell]) * (3 if mode == "train" else 1)
                peak = traced_peak(fns["xprnn"]) if xp is np else None
                r = {
                    "shape": shape, "cell": cell, "mode": mode, "ms": ms,
                    "samples_ms": {k: [1e3 * s for s in v] for k, v in times.items()},
                    "ratio": ms["xprnn"] / ms["torch"] if "torch" in ms else None,
                    "floor": ms["products"] / ms["torch"] if "torch" in ms else None,
                    "noisy": [k for k, v in times.items() if max(v) > NOISY * min(v)],
                    "gflops": flops / ms["xprnn"] / 1e6,
                    "cache_bytes": cache_b if mode == "train" else None,
                    "must_bytes": must_b if mode == "train" else None,
                    "peak_bytes": peak, "max_rel_diff": err,
                    "target": target(shape, cell, mode) if xp is np else None,
                }
                rows.append(r)
                print(f"{shape} {cell:4} {mode:7} " + "  ".join(
                    f"{k} {v:8.2f} ms" for k, v in ms.items()), file=sys.stderr, flush=True)
    return rows


def profile(fn, label):
    fn()
    prof = cProfile.Profile()
    prof.runcall(fn)
    print(f"\n### cProfile, xprnn {label}\n", flush=True)
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(15)


# -- output ------------------------------------------------------------------------------------
def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


def _ms(row, name):
    """Median ms of one contender, marked † when its rounds were erratic."""
    return _f(row["ms"].get(name), ".2f") + (" †" if name in row["noisy"] else "")


def _mib(b):
    return None if b is None else b / 2**20


def markdown(rows, env, ceiling, args):
    blas = [p for p in env["threadpools"] if p["user_api"] == "blas"]
    lines = [
        f"- CPU: {env['cpu']} ({env['cpu_count']} logical CPUs; {env['cpu_flags']})",
        f"- numpy {env['numpy']}, torch {env['torch']}, python {env['python']}, "
        f"xprnn at {env['xprnn_git']}; backend {args.backend}, {args.threads} threads",
        "- BLAS: " + "; ".join(
            f"{p['internal_api']} {p['version']} kernel {p['architecture']}, "
            f"{p['num_threads']} threads" for p in blas),
        "- env: " + (", ".join(f"{k}={v}" for k, v in env["env"].items()) or "no OPENBLAS_*, "
                     "OMP_*, MKL_* variables set"),
        f"- malloc: {env.get('malloc', '?')}",
        f"- matrix-product ceiling ({args.matmul_n}^3 float32): "
        + ", ".join(f"{g:.1f}" for g in ceiling["samples"])
        + f" GFLOP/s (start, end); shares below use {ceiling['gflops']:.1f}",
        f"- median of {args.repeats} interleaved rounds after {args.warmup} warm-up round(s), "
        f"{args.pause:g} s of sleep before each call (idle threads between contenders); "
        f"† = that contender's slowest round took > {NOISY:g}x its fastest (machine busy?); "
        f"1-minute load average {env['loadavg']} at the start, {loadavg()} at the end",
        "",
        "| shape (B,T,I,H) | cell | mode | xprnn ms | torch ms | xprnn/torch | target | "
        "products ms | products/torch | "
        "notebook ms | xprnn GFLOP/s | % of matmul | cache MiB | must-hold MiB | cache/must | "
        "peak MiB |",
        "|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        tgt = r["target"]
        verdict = "-"
        if tgt is not None and r["ratio"] is not None:
            limit, strict = tgt
            ok = r["ratio"] < limit if strict else r["ratio"] <= limit
            verdict = f"{'<' if strict else '<='}{limit:.1f} " + ("ok" if ok else "**MISS**")
        cm = r["cache_bytes"] / r["must_bytes"] if r["cache_bytes"] is not None else None
        lines.append("| " + " | ".join([
            "(" + ",".join(map(str, r["shape"])) + ")", r["cell"], r["mode"],
            _ms(r, "xprnn"), _ms(r, "torch"), _f(r["ratio"], ".2f"), verdict,
            _ms(r, "products"), _f(r.get("floor"), ".2f"), _ms(r, "notebook"),
            _f(r["gflops"], ".1f"),
            _f(100 * r["gflops"] / ceiling["gflops"], ".0f"),
            _f(_mib(r["cache_bytes"]), ".2f"), _f(_mib(r["must_bytes"]), ".2f"),
            _f(cm, ".2f"), _f(_mib(r["peak_bytes"]), ".2f"),
        ]) + " |")
    return "\n".join(lines) + "\n"


def parse_shape(s):
    try:
        shape = tuple(int(v) for v in s.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"a shape is four positive ints B,T,I,H, got {s!r}")
    return shape


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", nargs="+", type=parse_shape, metavar="B,T,I,H",
                   help="shapes to run (default: the four benchmark shapes)")
    p.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--repeats", type=int, help="timed rounds (default 7; --quick: 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument("--threads", type=int, default=2, help="BLAS/torch threads (default 2)")
    p.add_argument("--pause", type=float, default=0.3, metavar="S",
                   help="seconds of sleep before each timed call, so that the previous "
                        "contender's spinning threads are idle (default 0.3; 0: none)")
    p.add_argument("--quick", action="store_true", help="tiny shapes, 3 repeats: a smoke test")
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    add_malloc_option(p)
    p.add_argument("--matmul-n", type=int, help="size of the ceiling product (default 2048)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also dump the results as JSON")
    p.add_argument("--markdown", type=Path, metavar="PATH", help="also write the table here")
    p.add_argument("--profile", action="store_true",
                   help="print a cProfile (top 15, by own time) of one xprnn call per row "
                        "instead of timing")
    args = p.parse_args(argv)
    args.shapes = args.shapes or (QUICK_SHAPES if args.quick else SHAPES)
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.matmul_n = args.matmul_n or (512 if args.quick else 2048)
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        p.error("--repeats and --threads must be >= 1, --warmup >= 0")
    return args


def main(argv=None):
    global torch
    args = parse_args(argv)
    torch_device = "cpu"
    if args.backend == "cupy":
        import cupy as xp

        has_cuda = torch is not None and torch.cuda.is_available()
        torch_device = "cuda" if has_cuda else None

        def sync():
            xp.cuda.get_current_stream().synchronize()
            if has_cuda:
                torch.cuda.synchronize()
    else:
        xp, sync = np, None
    if torch is not None and torch_device is None:
        print("torch has no CUDA here: the torch column is left empty", file=sys.stderr)
        torch = None
    if torch is not None:
        torch.set_num_threads(args.threads)
    sync = sync or (lambda: None)
    malloc = apply_malloc(args.malloc)
    with threadpool_limits(limits=args.threads):
        env = environment(REPO)
        env["malloc"] = malloc
        if args.profile:
            run(args, xp, sync, torch_device)
            return
        start = matmul_gflops(args.matmul_n, xp=xp, dtype=np.float32, sync=sync)
        rows = run(args, xp, sync, torch_device)
        end = matmul_gflops(args.matmul_n, xp=xp, dtype=np.float32, sync=sync)
    # the larger of the two: the ceiling is what the machine could do in this run
    ceiling = {"samples": [start, end], "gflops": max(start, end)}
    table = markdown(rows, env, ceiling, args)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)
    if args.json:
        args.json.write_text(json.dumps(
            {"environment": env, "ceiling": ceiling, "args": {
                k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
             "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
