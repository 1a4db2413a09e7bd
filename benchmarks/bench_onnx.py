"""Serving the default sentiment model: ONNX Runtime (CPU) against xprnn's own ``predict_proba``.

The model is the one ``xprnn sentiment train`` builds with its defaults (``cli/_sentiment.py``
``DEFAULTS``: GRU, 64-d embeddings, 64 hidden units, one layer, mean pooling), with a
20,000-word vocabulary (the ``--max-vocab`` cap, which the full IMDB data reaches) and random
weights: the speed does not depend on their values. It is exported with
:func:`xprnn.export.to_onnx` and both contenders get the same padded batches:

- batch 1: one review of 230 tokens (about IMDB's median length in words): the latency of one
  request;
- batch 64: 64 reviews with IMDB-like lengths (log-normal, median ~200, cut at ``--max-len``
  400), in arbitrary order as a server receives them, so padded to the longest.

Each thread setting (BLAS threads for xprnn through ``threadpoolctl``; ``intra_op_num_threads``
with ``inter_op_num_threads = 1`` for ONNX Runtime) is timed in one process, the two contenders
interleaved round by round after a warm-up (``_timing.interleaved``), and the table reports each
median, their ratio and the throughput that follows. Both contenders are first checked to give
the same probabilities.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_onnx.py [--repeats N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _timing import environment, interleaved, loadavg, median_ms
from threadpoolctl import threadpool_limits

import xprnn
from xprnn.cli._sentiment import DEFAULTS
from xprnn.export import to_onnx

VOCAB = 20000


def _batch(lengths, rng):
    lengths = np.asarray(lengths, dtype=np.int64)
    ids = rng.integers(2, VOCAB, (lengths.size, int(lengths.max())))
    ids[np.arange(ids.shape[1])[None, :] >= lengths[:, None]] = 0  # <pad>
    return ids.astype(np.int64), lengths


def _session(proto, threads):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # ONNX Runtime's idle workers spin by default, taking a core from whatever runs next (here
    # xprnn's BLAS threads, interleaved with it; on a server, the tokenizer)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _compare(model, session, ids, lengths, threads, args):
    """``(xprnn ms, ONNX Runtime ms, max abs difference, worst max/min round ratio)``."""
    feed = {"ids": ids, "lengths": lengths}
    want = xprnn.backend.to_numpy(model.predict_proba(ids, lengths))
    diff = float(np.abs(session.run(None, feed)[0] - want).max())
    with threadpool_limits(limits=threads):
        times = interleaved({"xprnn": lambda: model.predict_proba(ids, lengths),
                             "onnxruntime": lambda: session.run(None, feed)},
                            repeats=args.repeats, warmup=args.warmup)
    spread = max(max(t) / min(t) for t in times.values())
    return median_ms(times["xprnn"]), median_ms(times["onnxruntime"]), diff, spread


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=31, help="timed rounds (median over them)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args(argv)
    import onnxruntime as ort

    d = DEFAULTS
    model = xprnn.SequenceClassifier(VOCAB, d["embedding_dim"], d["hidden"], 2, cell=d["cell"],
                                     num_layers=d["layers"], pooling=d["pooling"],
                                     dropout=d["dropout"], seed=0)
    model.eval()
    proto = to_onnx(model)
    rng = np.random.default_rng(0)
    imdb = np.clip(rng.lognormal(np.log(200), 0.6, 64).astype(int), 10, d["max_len"])
    batches = {1: _batch([230], rng), 64: _batch(imdb, rng)}

    env = environment(Path(__file__).resolve().parents[1])
    blas = [p for p in env["threadpools"] if p["user_api"] == "blas"]
    print(f"- CPU: {env['cpu']} ({env['cpu_count']} logical CPUs; {env['cpu_flags']})")
    print(f"- numpy {env['numpy']}, onnxruntime {ort.__version__}, python {env['python']}, "
          f"xprnn at {env['xprnn_git']}")
    print("- BLAS: " + ", ".join(f"{p['internal_api']} {p['version']}" for p in blas))
    print(f"- model: {model!r}, {model.num_parameters():,} parameters, float32")
    print(f"- median of {args.repeats} interleaved rounds after {args.warmup} warm-up round(s); "
          f"1-minute load average {loadavg()} at the start", flush=True)
    rows = []
    for threads in args.threads:
        session = _session(proto, threads)
        for B, (ids, lengths) in batches.items():
            x, o, diff, spread = _compare(model, session, ids, lengths, threads, args)
            rows.append((threads, B, int(ids.shape[1]), int(lengths.sum()), x, o, diff, spread))
            print(f"threads {threads} batch {B}: xprnn {x:.2f} ms, onnxruntime {o:.2f} ms",
                  file=sys.stderr, flush=True)
    print(f"- 1-minute load average {loadavg()} at the end\n")
    print("| threads | batch | padded to | tokens | xprnn ms | ONNX Runtime ms | xprnn / ORT "
          "| reviews/s xprnn | reviews/s ORT | tokens/s xprnn | tokens/s ORT | max abs diff |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for threads, B, T, tokens, x, o, diff, spread in rows:
        flag = " †" if spread > 3 else ""
        print(f"| {threads} | {B} | {T} | {tokens} | {x:.2f}{flag} | {o:.2f}{flag} | "
              f"{x / o:.1f} | {1e3 * B / x:,.0f} | {1e3 * B / o:,.0f} | "
              f"{1e3 * tokens / x:,.0f} | {1e3 * tokens / o:,.0f} | {diff:.1e} |")
    print("\n† = a contender's slowest round took > 3x its fastest (machine busy?)")


if __name__ == "__main__":
    main()
