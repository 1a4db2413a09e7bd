"""The defaults sweep behind ``docs/results.md``: sentiment models against the bag-of-words
baseline on data sets of different sizes and text lengths, all cut from IMDB.

Data sets (written once as CSV under ``--work``, test sets of ``--test-size`` reviews from IMDB's
test split, the same for every run):

- ``imdb-2k``, ``imdb-10k``, ``imdb-25k``: that many training reviews, whole;
- ``first30-2k``, ``first30-10k``: only the first 30 words of each review (a short-text
  stand-in: tweets, product snippets);
- ``sentence-2k``: only each review's first sentence.

Every configuration in ``CONFIGS`` runs ``xprnn sentiment train --json`` on every chosen data
set (NumPy, one BLAS thread, one process at a time) and the baseline comes with each run; the
results go to ``--work/sweep.jsonl`` (one line per run, appended, so a sweep can be resumed and
extended) and a Markdown table is printed.

    python benchmarks/sweep.py [--sets imdb-2k first30-2k ...] [--configs default bigru ...]
                               [--seeds 0 1 2] [--data DIR] [--work runs/sweep] [--table]

With several seeds a second table pairs each seed's classifier with that seed's baseline (each
seed draws its own validation split): the mean difference, its range, and the wins.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
LM = REPO / "runs" / "pretrain" / "lm-ss"  # the "pretrained" configuration's language model

SETS = {"imdb-2k": (2000, None), "imdb-10k": (10000, None), "imdb-25k": (25000, None),
        "first30-2k": (2000, "first30"), "first30-10k": (10000, "first30"),
        "sentence-2k": (2000, "sentence")}

COMMON = ["--no-progress", "--json", "--valid-fraction", "0.1"]
CONFIGS = {
    # the CLI's defaults as they are
    "default": [],
    # the same, blending the GRU in by the weights alone, however little it adds (the default
    # before the evidence rule of cli/_blend.py's decide)
    "default-z0": ["--blend-z", "0"],
    "default-10ep": ["--epochs", "10", "--patience", "3"],
    "bigru": ["--bidirectional", "--epochs", "10", "--patience", "3"],
    "bigru-max": ["--bidirectional", "--pooling", "max", "--dropout", "0.5", "--epochs", "10",
                  "--patience", "3"],
    "lstm": ["--cell", "lstm", "--epochs", "10", "--patience", "3"],
    "gru-lr5e-3": ["--lr", "5e-3", "--epochs", "10", "--patience", "3"],
    "gru128": ["--hidden", "128", "--embedding-dim", "128", "--epochs", "10", "--patience", "3"],
    # fine-tuned from a language model of the 25,000 IMDB training reviews (unlabelled; the
    # test reviews are not among them): `python benchmarks/results.py --only imdb-lm-ss`
    "pretrained": ["--init-from", str(LM), "--epochs", "10", "--patience", "3"],
    "pretrained-z0": ["--init-from", str(LM), "--epochs", "10", "--patience", "3",
                      "--blend-z", "0"],
    "pretrained-max": ["--init-from", str(LM), "--pooling", "max", "--epochs", "10",
                       "--patience", "3"],
}


def _cut(text, how):
    text = re.sub(r"<br\s*/?>", " ", text)
    if how == "first30":
        return " ".join(text.split()[:30])
    if how == "sentence":
        return re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)[0]
    return text


def _write(path, texts, labels):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["review", "sentiment"])
        w.writerows(zip(texts, labels, strict=True))


def make_sets(names, data, work, test_size):
    """Write each chosen data set's train.csv and test.csv (once); returns their paths."""
    from xprnn.text.readers import read_imdb

    imdb = data / "imdb" / "aclImdb_v1_train_test_text.tar.gz"
    todo = [n for n in names if not (work / n / "test.csv").is_file()]
    if todo:
        train, test = read_imdb(imdb, "train"), read_imdb(imdb, "test")
    paths = {}
    for name in names:
        size, how = SETS[name]
        folder = work / name
        paths[name] = folder / "train.csv", folder / "test.csv"
        if name not in todo:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for (texts, labels), n, path, seed in ((train, size, paths[name][0], 1),
                                               (test, test_size, paths[name][1], 2)):
            keep = np.random.default_rng(seed).permutation(len(texts))[:n]
            _write(path, [_cut(texts[i], how) for i in keep], [labels[i] for i in keep])
    return paths


def command(config, paths, seed, out):
    """The ``xprnn`` arguments of one run (``paths``: its train and test CSV)."""
    return ["sentiment", "train", "--data", str(paths[0]), "--test", str(paths[1]),
            *CONFIGS[config], *COMMON, "--seed", str(seed), "--out", str(out), "--force"]


def run(name, config, paths, work, seed=0):
    out = work / "models" / (f"{name}-{config}" + (f"-seed{seed}" if seed else ""))
    cmd = [sys.executable, "-m", "xprnn", *command(config, paths, seed, out)]
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env["OPENBLAS_NUM_THREADS"] = "1"
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:  # say why, and stop: the runs done so far are in the log
        sys.exit(f"sweep: {name} {config} seed {seed} failed (exit {r.returncode}):\n"
                 f"{r.stderr[-2000:]}")
    m = json.loads(r.stdout.strip().splitlines()[-1])
    blend = m.get("blend")
    return {"set": name, "config": config, "args": CONFIGS[config], "seed": seed,
            "test_accuracy": m["test_accuracy"], "baseline": m["baseline"]["test_accuracy"],
            # the recurrent model alone, when the saved classifier is its blend with the baseline
            "recurrent": blend["recurrent_test_accuracy"] if blend else m["test_accuracy"],
            "weights": [blend["recurrent_weight"], blend["ngram_weight"]] if blend else None,
            "baseline_seconds": m["baseline"]["seconds"], "epochs": m["epochs"],
            "best_epoch": m["best_epoch"], "seconds": round(time.perf_counter() - t0, 1)}


def _seed(record):
    return record.get("seed", 0)  # the first sweeps ran seed 0 only and did not record it


def table(records, seed=0):
    """Markdown: one row per data set, the baseline then each configuration (test accuracy of
    the saved classifier, bold where it beats the baseline; with the recurrent model alone in
    brackets when the classifier blends it with the baseline), for the runs with ``seed``."""
    records = [r for r in records if _seed(r) == seed]
    sets = list(dict.fromkeys(r["set"] for r in records))
    configs = list(dict.fromkeys(r["config"] for r in records))
    by = {(r["set"], r["config"]): r for r in records}
    lines = ["| data set | baseline | " + " | ".join(configs) + " |",
             "| --- | --- | " + " | ".join("---" for _ in configs) + " |"]
    for s in sets:
        base = next(r["baseline"] for r in records if r["set"] == s)
        cells = []
        for c in configs:
            r = by.get((s, c))
            if r is None:
                cells.append("")
                continue
            acc = f"{r['test_accuracy']:.3f}"
            alone = f"RNN {r['recurrent']:.3f}, " if r.get("weights") else ""
            cells.append((f"**{acc}**" if r["test_accuracy"] > r["baseline"] else acc)
                         + f" ({alone}{r['seconds']:.0f} s)")
        lines.append(f"| {s} | {base:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seeds_table(records):
    """Markdown, for each data set and configuration run with several seeds (each seed draws
    its own validation split, so the baseline changes too): the mean test accuracy of the
    baseline and of the saved classifier, the mean difference and its range in points, and on
    how many seeds the classifier beat, tied with and lost to the baseline. Empty when nothing
    ran with two seeds."""
    groups = {}
    for r in records:
        groups.setdefault((r["set"], r["config"]), {})[_seed(r)] = r
    lines = []
    for (s, c), by_seed in groups.items():
        if len(by_seed) < 2:
            continue
        runs = [by_seed[k] for k in sorted(by_seed)]
        diff = [100 * (r["test_accuracy"] - r["baseline"]) for r in runs]
        # a classifier that is the baseline (blend weight 0) ties it exactly
        wins, ties = sum(d > 0 for d in diff), sum(d == 0 for d in diff)
        lines.append(f"| {s} | {c} | {len(runs)} | "
                     f"{np.mean([r['baseline'] for r in runs]):.4f} | "
                     f"{np.mean([r['test_accuracy'] for r in runs]):.4f} | "
                     f"{np.mean(diff):+.2f} ({min(diff):+.2f} to {max(diff):+.2f}) | "
                     f"{wins} / {ties} / {len(runs) - wins - ties} |")
    if not lines:
        return ""
    return "\n".join(["| data set | configuration | seeds | baseline | classifier | "
                      "difference, points | beats / ties / loses |",
                      "| --- | --- | --- | --- | --- | --- | --- |", *lines])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "sweep")
    ap.add_argument("--test-size", type=int, default=5000)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="N",
                    help="run every set and configuration with each of these seeds (default 0)")
    ap.add_argument("--table", action="store_true", help="only print the tables of what ran")
    args = ap.parse_args(argv)
    log = args.work / "sweep.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    if not args.table:
        if not args.data.is_dir():
            sys.exit(f"sweep: data sets not found at {args.data} (give --data DIR)")
        if any(c.startswith("pretrained") for c in args.configs) and not (
                LM / "model.safetensors").is_file():
            sys.exit(f"sweep: the pretrained configuration starts from the language model in "
                     f"{LM}; make it first: python benchmarks/results.py --only imdb-lm-ss")
        paths = make_sets(args.sets, args.data, args.work, args.test_size)
        for s, c, seed in ((s, c, seed) for seed in args.seeds for s in args.sets
                           for c in args.configs):
            if any(r["set"] == s and r["config"] == c and _seed(r) == seed for r in done):
                continue
            rec = run(s, c, paths[s], args.work, seed)
            print(json.dumps(rec), flush=True)
            done.append(rec)
            with open(log, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
    print(table(done))
    by_seeds = seeds_table(done)
    if by_seeds:
        print("\n" + by_seeds)


if __name__ == "__main__":
    main()
