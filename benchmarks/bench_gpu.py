"""xprnn on CuPy against torch's cuDNN on one GPU, float32, TF32 off, one process, interleaved.

- **Layers**: RNN (tanh), LSTM and GRU, one layer, one direction, at (B, T, I, H) = (256,100,512,
  1024), (64,100,128,256), (128,50,300,512), (32,200,64,128), (1,1000,32,64); ``forward``
  (output only) and ``train`` (forward plus backward of ``sum(out * R)``, the input gradient
  included). Both hold the same weights (torch's initialisation loaded into xprnn), and each row
  first checks that they agree. A third contender, ``products``, runs the layer's matrix
  products alone on CuPy (``_timing.products``): the least a per-step Python loop over cuBLAS
  calls can take, whatever the pointwise kernels do.
- **End to end**: IMDB-shaped training, a bidirectional GRU and a bidirectional LSTM
  (embedding 128, hidden 128, mean pooling, 2 classes, a 20,000-word vocabulary, batch 64,
  synthetic ids with IMDB-like lengths, median ~200 tokens, cut at 400, each batch bucketed by
  length): ``xprnn.train_step`` on a ``SequenceClassifier`` against the same model in torch
  (packed sequences, cuDNN), both with Adam and gradient clipping at 5, both reading the loss
  back once per step; tokens (valid steps) per second.
- **Launch counts** beside them: backend calls per time step of the layer
  (``benchmarks/count_launches.py``, counted on the CPU).

TF32 is off on both sides: ``CUPY_TF32=0`` is set before CuPy is imported, and torch's
``allow_tf32`` flags are cleared, so every matrix product is full float32. The contenders of a
row run round by round, the order rotating, after a warm-up; the CUDA streams are synchronised
before each clock starts and stops; medians are reported and their ratio (xprnn / torch).
Without CuPy or a CUDA device it says so and exits 0; without torch on CUDA the torch columns
stay empty.

    python benchmarks/bench_gpu.py [--quick] [--markdown PATH] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ["CUPY_TF32"] = "0"  # before CuPy is imported: no TF32 in its matrix products

import numpy as np  # noqa: E402
from _timing import interleaved, median_ms, products  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHAPES = [(256, 100, 512, 1024), (64, 100, 128, 256), (128, 50, 300, 512), (32, 200, 64, 128),
          (1, 1000, 32, 64)]
QUICK_SHAPES = [(64, 20, 32, 64), (1, 50, 16, 32)]


def gpu_or_reason():
    """``(cupy, None)`` when CuPy sees a CUDA device, else ``(None, why)``."""
    try:
        import cupy
    except ImportError as e:
        return None, f"cupy is not importable ({e})"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver, no runtime: CuPy raises its own CUDA errors
        return None, f"cupy is installed but no CUDA device is usable ({e})"
    return (cupy, None) if n else (None, "cupy is installed but no CUDA device is present")


def load_torch():
    """torch with CUDA and TF32 off, or None."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}


class LayerRow:
    def __init__(self, shape, cell, cp, torch):
        import xprnn

        B, T, I, H = shape
        rng = np.random.default_rng(0)
        x, R = (rng.standard_normal(s).astype(np.float32) for s in ((T, B, I), (T, B, H)))
        self.x, self.R = cp.asarray(x), cp.asarray(R)
        self.layer = getattr(xprnn, cell)(I, H, dtype="float32", xp=cp, seed=0)
        self.torch, self.tl = torch, None
        if torch is not None:
            torch.manual_seed(0)
            self.tl = getattr(torch.nn, cell)(I, H).to("cuda", torch.float32)
            self.layer.load_state_dict({k: v.detach().cpu().numpy()
                                        for k, v in self.tl.state_dict().items()})
            self.xt, self.Rt = torch.from_numpy(x).cuda(), torch.from_numpy(R).cuda()

    def xprnn_forward(self):
        return self.layer(self.x)[0]

    def xprnn_train(self):
        out, _, cache = self.layer.forward(self.x)
        return out, self.layer.backward(cache, self.R)[0]

    def torch_forward(self):
        with self.torch.no_grad():
            return self.tl(self.xt)[0]

    def torch_train(self):
        self.tl.zero_grad(set_to_none=True)
        x = self.xt.detach().requires_grad_()
        out, _ = self.tl(x)
        out.backward(self.Rt)
        return out, x.grad

    def check(self):
        """Largest relative difference of ``out`` and ``dx`` between the two, or None."""
        if self.tl is None:
            return None
        from xprnn.backend import to_numpy

        ours = [to_numpy(a) for a in self.xprnn_train()]
        theirs = [t.detach().cpu().numpy() for t in self.torch_train()]
        return max(_rel(a, b) for a, b in zip(ours, theirs))


def bench_layers(args, cp, torch, sync, counts):
    rows = []
    for shape in args.shapes:
        for cell in args.cells:
            row = LayerRow(shape, cell, cp, torch)
            alone = products(cp, shape, GATES[cell])  # the layer's matrix products, nothing else
            diff = row.check()
            fwd, bwd = counts[cell]
            for mode in args.modes:
                fns = {"xprnn": getattr(row, f"xprnn_{mode}"),
                       "products": alone[mode]}
                if row.tl is not None:
                    fns["torch"] = getattr(row, f"torch_{mode}")
                times = interleaved(fns, repeats=args.repeats, warmup=args.warmup, sync=sync)
                ms = {k: median_ms(v) for k, v in times.items()}
                rows.append({"shape": shape, "cell": cell, "mode": mode, "ms": ms,
                             "ratio": ms["xprnn"] / ms["torch"] if "torch" in ms else None,
                             "max_rel_diff": diff,
                             "calls_per_step": fwd if mode == "forward" else fwd + bwd})
                print(f"{shape} {cell:4} {mode:7} " + "  ".join(
                    f"{k} {v:8.2f} ms" for k, v in ms.items()), file=sys.stderr, flush=True)
            del row, alone
            cp.get_default_memory_pool().free_all_blocks()
    return rows


# -- end to end ----------------------------------------------------------------------------------
VOCAB, EMB, HID, BATCH = 20000, 128, 128, 64


def imdb_batches(n, seed=0, max_len=400):
    """``n`` batches ``(ids (64, T), lengths (64,), labels (64,))`` of IMDB-like lengths."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lengths = np.sort(np.clip(rng.lognormal(np.log(200), 0.6, BATCH).astype(np.int64), 10,
                                  max_len))[::-1].copy()
        ids = rng.integers(2, VOCAB, (BATCH, int(lengths.max())))
        ids[np.arange(ids.shape[1])[None, :] >= lengths[:, None]] = 0
        out.append((ids, lengths, rng.integers(0, 2, BATCH)))
    return out


def xprnn_trainer(cell, cp, batches):
    import xprnn
    from xprnn.optim import Adam

    model = xprnn.SequenceClassifier(VOCAB, EMB, HID, 2, cell=cell, bidirectional=True,
                                     pooling="mean", xp=cp, seed=0)
    opt = Adam(lr=1e-3)

    def run():
        for batch in batches:
            xprnn.train_step(model, batch, opt, clip=5.0)
    return run


def torch_trainer(cell, torch, batches):
    nn = torch.nn
    pack, unpack = nn.utils.rnn.pack_padded_sequence, nn.utils.rnn.pad_packed_sequence

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(VOCAB, EMB, padding_idx=0)
            self.rnn = getattr(nn, cell.upper())(EMB, HID, batch_first=True, bidirectional=True)
            self.fc = nn.Linear(2 * HID, 2)

        def forward(self, ids, lengths):
            out, _ = self.rnn(pack(self.emb(ids), lengths, batch_first=True))
            out, _ = unpack(out, batch_first=True)  # zeros past each row's length
            n = lengths.to(out.device, out.dtype)[:, None]
            return self.fc(out.sum(dim=1) / n)  # mean over the valid steps

    torch.manual_seed(0)
    model = Model().cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def run():
        for ids, lengths, labels in batches:
            opt.zero_grad(set_to_none=True)
            logits = model(torch.from_numpy(ids).cuda(), torch.from_numpy(lengths))
            loss = nn.functional.cross_entropy(logits, torch.from_numpy(labels).cuda())
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            loss.item()  # one read per step, as xprnn.train_step does
    return run


def bench_end_to_end(args, cp, torch, sync, counts_bi):
    batches = imdb_batches(args.e2e_batches)
    tokens = int(sum(int(b[1].sum()) for b in batches))
    rows = []
    for cell in ("gru", "lstm"):
        fns = {"xprnn": xprnn_trainer(cell, cp, batches)}
        if torch is not None:
            fns["torch"] = torch_trainer(cell, torch, batches)
        times = interleaved(fns, repeats=args.e2e_repeats, warmup=1, sync=sync)
        tps = {k: tokens / (median_ms(v) / 1e3) for k, v in times.items()}
        rows.append({"model": f"Bi{cell.upper()}", "batches": len(batches), "tokens": tokens,
                     "tokens_per_s": tps,
                     "ratio": tps["xprnn"] / tps["torch"] if "torch" in tps else None,
                     "calls_per_step": counts_bi[cell.upper()]})
        print(f"Bi{cell.upper()} " + "  ".join(f"{k} {v:,.0f} tokens/s" for k, v in tps.items()),
              file=sys.stderr, flush=True)
    return rows


# -- report --------------------------------------------------------------------------------------
def environment(cp, torch):
    from xprnn import __version__
    from xprnn.backend import cupy_kernels, kernels

    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"]
    info = {"gpu": name.decode() if isinstance(name, bytes) else name,
            "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(), "cupy": cp.__version__,
            "CUPY_TF32": os.environ.get("CUPY_TF32"), "python": platform.python_version(),
            "numpy": np.__version__, "xprnn": __version__,
            "cupy_kernels_registered": any(c is cupy_kernels.compile
                                           for _, c in kernels._COMPILERS)}
    if torch is not None:
        info.update(torch=torch.__version__, cudnn=torch.backends.cudnn.version(),
                    torch_allow_tf32=[torch.backends.cuda.matmul.allow_tf32,
                                      torch.backends.cudnn.allow_tf32])
    return info


def _f(value, fmt):
    return "" if value is None else format(value, fmt)


def markdown(env, layer_rows, e2e_rows):
    lines = ["- " + ", ".join(f"{k}: {v}" for k, v in env.items()), "",
             "| (B,T,I,H) | cell | mode | xprnn ms | torch ms | xprnn/torch | products ms "
             "| calls/step | max rel diff |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in layer_rows:
        cols = [str(tuple(r["shape"])), r["cell"], r["mode"], _f(r["ms"]["xprnn"], ".2f"),
                _f(r["ms"].get("torch"), ".2f"), _f(r["ratio"], ".2f"),
                _f(r["ms"].get("products"), ".2f"),
                _f(r["calls_per_step"], "g"), _f(r["max_rel_diff"], ".1e")]
        lines.append("| " + " | ".join(cols) + " |")
    if e2e_rows:
        lines += ["", "| model | batches | tokens | xprnn tokens/s | torch tokens/s | xprnn/torch "
                  "| calls/step fwd+bwd (no mask, every step masked) |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for r in e2e_rows:
            (f0, b0), (f1, b1) = r["calls_per_step"]
            cols = [r["model"], str(r["batches"]), str(r["tokens"]),
                    _f(r["tokens_per_s"]["xprnn"], ",.0f"),
                    _f(r["tokens_per_s"].get("torch"), ",.0f"), _f(r["ratio"], ".2f"),
                    f"{f0 + b0:g}, {f1 + b1:g}"]
            lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", nargs="+", type=lambda s: tuple(int(v) for v in s.split(",")),
                   default=None, metavar="B,T,I,H")
    p.add_argument("--cells", nargs="+", choices=("RNN", "LSTM", "GRU"),
                   default=["RNN", "LSTM", "GRU"])
    p.add_argument("--modes", nargs="+", choices=("forward", "train"),
                   default=["forward", "train"])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--e2e-batches", type=int, default=20)
    p.add_argument("--e2e-repeats", type=int, default=5)
    p.add_argument("--no-e2e", action="store_true", help="skip the end-to-end rows")
    p.add_argument("--plain", action="store_true",
                   help="without xprnn's CuPy kernels: every pointwise operation eagerly")
    p.add_argument("--quick", action="store_true", help="two small shapes, 3 repeats")
    p.add_argument("--markdown", type=Path)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup, args.e2e_batches, args.e2e_repeats = 3, 1, 3, 3
    if args.shapes is None:
        args.shapes = QUICK_SHAPES if args.quick else SHAPES
    return args


def main(argv=None):
    args = parse_args(argv)
    cp, why = gpu_or_reason()
    if cp is None:
        print(f"bench_gpu.py: skipped, no GPU to measure: {why}", file=sys.stderr)
        return 0
    torch = load_torch()
    if torch is None:
        print("torch with CUDA is not available: the torch columns stay empty", file=sys.stderr)
    if args.plain:
        from xprnn.backend import cupy_kernels, unregister_compiler

        unregister_compiler(cupy_kernels.compile)

    def sync():
        cp.cuda.get_current_stream().synchronize()
        if torch is not None:
            torch.cuda.synchronize()

    from count_launches import per_step

    counts = {c: per_step(c, False, False) for c in ("RNN", "LSTM", "GRU")}
    counts_bi = {c: (per_step(c, True, False), per_step(c, True, True)) for c in ("GRU", "LSTM")}
    env = environment(cp, torch)
    t0 = time.perf_counter()
    layer_rows = bench_layers(args, cp, torch, sync, counts)
    e2e_rows = [] if args.no_e2e else bench_end_to_end(args, cp, torch, sync, counts_bi)
    env["seconds"] = round(time.perf_counter() - t0, 1)
    table = markdown(env, layer_rows, e2e_rows)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "layers": layer_rows,
                                         "end_to_end": e2e_rows, "args": {
                                             k: (str(v) if isinstance(v, Path) else v)
                                             for k, v in vars(args).items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
