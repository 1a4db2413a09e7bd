"""Inference at scale on this machine: texts per second of ``xprnn sentiment predict`` on a file
of 20,000 reviews (the shipped IMDB sample's 4,000, repeated) in one process with one BLAS
thread, one process with two threads, and two processes of one thread each under
``mpiexec -n 2``.

    python benchmarks/bench_predict.py              # 3 rounds (~1 minute)
    python benchmarks/bench_predict.py --texts 4000 --rounds 1   # a smoke test

Method: the command line's default model (GRU 64, embedding 64, float32) trained for one epoch;
each configuration runs the real command (``-i FILE -o FILE``, default chunks of 1,000 and
batches of 64) as a fresh process, or two under ``mpiexec``, with the thread variables set before
it starts; the configurations take turns round by round, their order rotating, and each one's
median is reported. Texts per second are the texts divided by the command's wall time, start-up
and model loading included (about 0.3 s). The outputs of one and two processes are compared byte
for byte. The 1-minute load average before and after is printed: above ~0.5 at the start another
process shared the cores.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _timing import _cpu_model, _git_state, loadavg  # noqa: E402
from bench_mpi import _env, _mpiexec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2),
           ("2 processes x 1 thread (mpiexec -n 2)", 2, 1)]


def _texts(n, path):
    from xprnn.text.readers import load_sample

    train, _, test, _ = load_sample()
    reviews = [" ".join(t.split()) for t in train + test]  # one line each
    rows = (reviews * (n // len(reviews) + 1))[:n]
    path.write_text("".join(t + "\n" for t in rows), encoding="utf-8")
    return sum(len(t.split()) for t in rows) / n


def run_config(procs, threads, model, data, out):
    cmd = [sys.executable, "-m", "xprnn", "sentiment", "predict", "--model", str(model), "-i",
           str(data), "-o", str(out), "--no-progress"]
    if procs > 1:
        cmd = [_mpiexec(), "-n", str(procs), *cmd]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=_env(threads), capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--texts", type=int, default=20000)
    args = ap.parse_args()
    if _mpiexec() is None:
        raise SystemExit("no mpiexec: pip install 'xprnn[mpi]'")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, "-m", "xprnn", "sentiment", "train", "--epochs", "1",
                        "--out", str(tmp / "model"), "--json", "--no-progress"], env=_env(1),
                       check=True, capture_output=True)
        words = _texts(args.texts, tmp / "texts.txt")
        load_before = loadavg()
        rates = {name: [] for name, _, _ in CONFIGS}
        for r in range(args.rounds):
            order = CONFIGS[r % len(CONFIGS):] + CONFIGS[:r % len(CONFIGS)]
            for name, procs, threads in order:
                out = tmp / f"out-{procs}.tsv"
                rate = args.texts / run_config(procs, threads, tmp / "model", tmp / "texts.txt",
                                               out)
                rates[name].append(rate)
                print(f"round {r + 1}: {name}: {rate:,.0f} texts/s", file=sys.stderr)
        same = filecmp.cmp(tmp / "out-1.tsv", tmp / "out-2.tsv", shallow=False)
    load_after = loadavg()
    med = {k: statistics.median(v) for k, v in rates.items()}
    base = med[CONFIGS[0][0]]
    busy = (load_before or 0) > 0.5
    print(f"\n`xprnn sentiment predict` of {args.texts:,} reviews ({words:.0f} words on average), "
          f"the `sentiment train` default model, median of {args.rounds} round(s). CPU: "
          f"{_cpu_model()}, {os.cpu_count()} cores; git {_git_state(REPO)}; load {load_before}"
          f" -> {load_after}" + (" (**busy machine: the cores were shared**)" if busy else "")
          + f"; 2-process output {'identical' if same else 'DIFFERENT'} to 1-process\n")
    print("| configuration | texts/s (median) | all rounds | vs 1 process, 1 thread |")
    print("| --- | --- | --- | --- |")
    for name, _, _ in CONFIGS:
        print(f"| {name} | {med[name]:,.0f} | {', '.join(f'{x:,.0f}' for x in rates[name])} | "
              f"{med[name] / base:.2f}x |")


if __name__ == "__main__":
    main()
