"""Data-parallel training on this machine: examples per second of ``xprnn sentiment train`` (the
command line's default model, on the shipped IMDB sample) in one process with one BLAS thread,
one process with two threads, and two processes of one thread each under ``mpiexec -n 2``; the
time of one all-reduce of the default models' gradients; and, on paper, what a ring all-reduce
costs on 8 to 64 machines.

    python benchmarks/bench_mpi.py                 # 3 rounds of one epoch each (~5 minutes)
    python benchmarks/bench_mpi.py --quick         # 600 reviews, 1 round: a smoke test
    python benchmarks/bench_mpi.py --json out.json # also write every measurement

Method: each configuration runs the real command (a fresh process, or two under ``mpiexec``),
with ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set before it starts; the
configurations take turns round by round, their order rotating, and each one's median over the
rounds is reported. Examples per second are the training rows of one epoch divided by that
epoch's seconds as ``history.json`` records them (the loop itself: no start-up, no validation).
The 1-minute load average is recorded before and after (after, it counts this script's own
processes); above ~0.5 at the start another process shared the cores and the numbers are flagged.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _timing import _cpu_model, _git_state, loadavg  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2),
           ("2 processes x 1 thread (mpiexec -n 2)", 2, 1)]
GBITS = (10, 100)  # network speeds for the paper estimate, Gbit/s
LATENCY = 5e-6  # seconds per message, a typical Ethernet/InfiniBand figure for the estimate


def _mpiexec():
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _env(threads):
    env = dict(os.environ)
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    return env


def run_config(procs, threads, args, out):
    """One training run; returns ``(examples/s, parameters, train rows)``."""
    cmd = [sys.executable, "-m", "xprnn", "sentiment", "train", "--epochs", str(args.epochs),
           "--out", str(out), "--force", "--json", "--no-progress"]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    if procs > 1:
        cmd = [_mpiexec(), "-n", str(procs), *cmd]
    r = subprocess.run(cmd, env=_env(threads), capture_output=True, text=True, timeout=3600)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    result = json.loads(r.stdout.splitlines()[-1])
    history = json.loads((out / "history.json").read_text())
    seconds = sum(e["seconds"] for e in history["epochs"])
    assert history["world_size"] == procs
    return result["train_size"] * len(history["epochs"]) / seconds, result["parameters"], \
        result["train_size"]


def allreduce_worker(n, repeats):
    """Under mpiexec: median seconds of one in-place Allreduce of ``n`` float32."""
    from mpi4py import MPI

    comm, buf = MPI.COMM_WORLD, np.ones(n, dtype=np.float32)
    times = []
    for i in range(repeats + 5):
        comm.Barrier()
        t0 = MPI.Wtime()
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        if i >= 5:
            times.append(MPI.Wtime() - t0)
    if comm.rank == 0:
        print(json.dumps(statistics.median(times)))


def allreduce_seconds(n):
    cmd = [_mpiexec(), "-n", "2", sys.executable, __file__, "--allreduce-worker", str(n)]
    r = subprocess.run(cmd, env=_env(1), capture_output=True, text=True, timeout=600)
    return json.loads(r.stdout.splitlines()[-1]) if r.returncode == 0 else float("nan")


def lm_step_worker():
    """Median seconds of one training step of the ``lm train`` defaults (batch 32 x 100 chars)."""
    import time

    import xprnn

    model = xprnn.LanguageModel(100, 64, 256, num_layers=2, seed=0)
    ids = np.random.default_rng(0).integers(0, 100, (32, 101))
    times = []
    for _ in range(4):
        t0 = time.perf_counter()
        model.train_batch((ids[:, :-1], ids[:, 1:]))
        times.append(time.perf_counter() - t0)
    print(json.dumps(statistics.median(times[1:])))


def lm_step_seconds():
    cmd = [sys.executable, __file__, "--lm-step-worker"]
    r = subprocess.run(cmd, env=_env(1), capture_output=True, text=True, timeout=600)
    return json.loads(r.stdout.splitlines()[-1])


def lm_parameters():
    """The ``xprnn lm train`` defaults (2 x LSTM 256, embedding 64) with a 100-character
    vocabulary, the size of a typical English character set."""
    import xprnn

    return xprnn.LanguageModel(100, 64, 256, num_layers=2).num_parameters()


def ring(n_floats, machines, gbits):
    """Seconds of one ring all-reduce of ``n_floats`` float32 between ``machines``: every
    process sends (and receives) ``2 (p-1)/p`` of the buffer in ``2 (p-1)`` messages."""
    p = machines
    bytes_sent = 2 * (p - 1) / p * 4 * n_floats
    return bytes_sent, bytes_sent / (gbits * 1e9 / 8) + 2 * (p - 1) * LATENCY


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="training reviews (default: all)")
    ap.add_argument("--quick", action="store_true", help="--limit 600 --rounds 1")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--allreduce-worker", type=int, metavar="N", help=argparse.SUPPRESS)
    ap.add_argument("--lm-step-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.allreduce_worker:
        return allreduce_worker(args.allreduce_worker, 200)
    if args.lm_step_worker:
        return lm_step_worker()
    if args.quick:
        args.limit, args.rounds = 600, 1
    if _mpiexec() is None:
        raise SystemExit("no mpiexec: pip install 'xprnn[mpi]'")
    load_before = loadavg()
    rates = {name: [] for name, _, _ in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = CONFIGS[r % len(CONFIGS):] + CONFIGS[:r % len(CONFIGS)]
            for name, procs, threads in order:
                rate, params, rows = run_config(procs, threads, args, Path(tmp) / "run")
                rates[name].append(rate)
                print(f"round {r + 1}: {name}: {rate:.1f} examples/s", file=sys.stderr)
    load_after = loadavg()
    med = {k: statistics.median(v) for k, v in rates.items()}
    base = med[CONFIGS[1][0]]
    busy = (load_before or 0) > 0.5  # at the end the load counts this script's own processes
    print(f"\n`xprnn sentiment train` defaults (GRU 64, embedding 64, batch 32, float32), "
          f"{rows} training reviews, {params:,} parameters; {args.epochs} epoch(s), median of "
          f"{args.rounds} round(s). CPU: {_cpu_model()}, {os.cpu_count()} cores; git "
          f"{_git_state(REPO)}; load {load_before} -> {load_after}"
          + (" (**busy machine: the cores were shared**)" if busy else "") + "\n")
    print("| configuration | examples/s | vs 1 process, 2 threads |")
    print("| --- | --- | --- |")
    for name, _, _ in CONFIGS:
        print(f"| {name} | {med[name]:.1f} | {med[name] / base:.2f}x |")

    lm = lm_parameters()
    measured = {"sentiment": (params, allreduce_seconds(params)),
                "lm": (lm, allreduce_seconds(lm))}
    steps = {"sentiment": 32 / med[CONFIGS[0][0]], "lm": lm_step_seconds()}
    print(f"\nOne all-reduce between 2 processes on this machine (shared memory), and a ring on "
          f"p machines ({LATENCY * 1e6:.0f} us per message). In brackets: the share of a step "
          f"spent computing when every machine keeps a batch of 32 rows (global batch 32 p; "
          f"one such step takes {steps['sentiment'] * 1e3:.0f} ms for the sentiment model and "
          f"{steps['lm'] * 1e3:.0f} ms for the language model (32 x 100 characters) on one core "
          f"here):\n")
    print("| model | parameters | bytes per step | here, 2 processes | p | sent per process | "
          + " | ".join(f"{g} Gbit/s" for g in GBITS) + " |")
    print("| --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in GBITS) + " |")
    paper = []
    for model, (n, here) in measured.items():
        step = steps[model]
        for p in (8, 16, 32, 64):
            sent, _ = ring(n, p, GBITS[0])
            times = [ring(n, p, g)[1] for g in GBITS]
            paper.append({"model": model, "p": p, "sent": sent, "seconds": times})
            print(f"| {model} | {n:,} | {4 * n / 1e6:.2f} MB | {here * 1e3:.2f} ms | {p} | "
                  f"{sent / 1e6:.2f} MB | "
                  + " | ".join(f"{t * 1e3:.2f} ms ({step / (step + t):.0%})" for t in times)
                  + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"rates": rates, "median": med, "parameters": params, "rows": rows,
             "lm_parameters": lm, "allreduce_seconds": {k: v[1] for k, v in measured.items()},
             "paper": paper, "step_seconds": steps, "load": [load_before, load_after],
             "cpu": _cpu_model(), "git": _git_state(REPO)}, indent=2))


if __name__ == "__main__":
    main()
