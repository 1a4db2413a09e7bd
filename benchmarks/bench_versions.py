"""Time this working tree's layers against another git revision's, in one process.

A refactor must not cost speed. This script extracts ``src/xprnn`` of a git revision (default
``HEAD``) into a temporary folder as the package ``xprnn_ref``, loads both versions side by side,
and times the same layer calls of each (and of ``torch.nn`` where installed, as a same-run
yardstick), interleaved round by round as in ``bench_layers.py``. It prints, per row, the median
milliseconds and the ratio ``this tree / revision`` (below 1: faster now).

Run from the repository root on an idle machine, e.g.::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_versions.py --ref HEAD~3
"""

from __future__ import annotations

import argparse
import importlib
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from _timing import add_malloc_option, apply_malloc, interleaved, median_ms
from threadpoolctl import threadpool_limits

import xprnn

try:
    import torch
except ImportError:  # the torch column is then left empty
    torch = None

REPO = Path(__file__).resolve().parent.parent
SHAPES = [(64, 100, 128, 256), (32, 200, 64, 128), (128, 50, 300, 512), (1, 1000, 32, 64)]


def load_revision(ref, into):
    """Import ``src/xprnn`` at git revision ``ref`` as the package ``xprnn_ref``."""
    data = subprocess.run(["git", "-C", str(REPO), "archive", ref, "src/xprnn"], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    Path(into, "src", "xprnn").rename(Path(into, "xprnn_ref"))
    sys.path.insert(0, str(into))
    return importlib.import_module("xprnn_ref")


def contenders(pkg_new, pkg_ref, shape, cell, mode):
    B, T, I, H = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    R = rng.standard_normal((T, B, H)).astype(np.float32)
    new = getattr(pkg_new, cell)(I, H, seed=0)
    ref = getattr(pkg_ref, cell)(I, H, seed=0)
    ref.load_state_dict(new.state_dict())

    def run(layer):
        if mode == "forward":
            return lambda: layer(x)
        return lambda: layer.backward(layer.forward(x)[2], R)

    out = {"new": run(new), "ref": run(ref)}
    a, b = out["new"](), out["ref"]()
    for u, v in zip(np.asarray(a[0]).ravel()[:1000], np.asarray(b[0]).ravel()[:1000]):
        assert abs(u - v) <= 1e-5 * (1 + abs(v)), "the two versions disagree"
    if torch is not None:
        tl = getattr(torch.nn, cell)(I, H)
        tl.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in
                            new.state_dict().items()})
        xt, Rt = torch.from_numpy(x), torch.from_numpy(R)

        def torch_call():
            if mode == "forward":
                with torch.no_grad():
                    return tl(xt)
            xg = xt.detach().requires_grad_()
            o, _ = tl(xg)
            o.backward(Rt)
            return xg.grad

        out["torch"] = torch_call
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", default="HEAD", help="git revision to compare with (default HEAD)")
    ap.add_argument("--cells", nargs="+", default=["RNN", "LSTM", "GRU"])
    ap.add_argument("--modes", nargs="+", default=["forward", "train"])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pause", type=float, default=0.3, metavar="S",
                    help="seconds of sleep before each timed call, so that the previous "
                         "contender's spinning threads are idle (default 0.3; 0: none)")
    ap.add_argument("--quick", action="store_true", help="small shapes, 3 repeats")
    add_malloc_option(ap)
    ap.add_argument("--shapes", nargs="+", metavar="B,T,I,H",
                    help="only these shapes, e.g. 128,50,300,512")
    args = ap.parse_args(argv)
    shapes = [(8, 20, 16, 32), (1, 50, 8, 16)] if args.quick else SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes]
    repeats = 3 if args.quick else args.repeats
    if torch is not None:
        torch.set_num_threads(args.threads)
    malloc = apply_malloc(args.malloc)
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(args.threads):
        ref = load_revision(args.ref, tmp)
        print(f"this tree vs {args.ref}; {args.threads} threads; median of {repeats} rounds, "
              f"{args.pause:g} s pause before each call; malloc {malloc}\n")
        print("| shape (B,T,I,H) | cell | mode | now ms | ref ms | now/ref | now/torch | "
              "ref/torch |")
        print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
        ratios = []
        for shape in shapes:
            for cell in args.cells:
                for mode in args.modes:
                    fns = contenders(xprnn, ref, shape, cell, mode)
                    ms = {k: median_ms(v) for k, v in
                          interleaved(fns, repeats=repeats, warmup=1,
                                      pause=args.pause).items()}
                    ratios.append(ms["new"] / ms["ref"])
                    t = ms.get("torch")
                    cols = [f"{ms['new']:.2f}", f"{ms['ref']:.2f}", f"{ratios[-1]:.2f}",
                            f"{ms['new'] / t:.2f}" if t else "", f"{ms['ref'] / t:.2f}" if t
                            else ""]
                    print(f"| {shape} | {cell} | {mode} | " + " | ".join(cols) + " |",
                          flush=True)
        geo = float(np.exp(np.mean(np.log(ratios))))
        print(f"\ngeometric mean now/ref over {len(ratios)} rows: {geo:.3f}")


if __name__ == "__main__":
    main()
