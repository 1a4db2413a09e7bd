"""The long training runs behind ``docs/results.md`` (``nox -s results``), CPU only.

Runs each command below in turn (NumPy backend), each with its own time limit, and prints one
JSON line of final metrics per run; ``--only NAME`` runs one. The data sets are read in place
from ``../shared/data``. The BLAS variables that slow a current NumPy on this machine are unset
for the child processes (PERF-NOTES.md).

    python benchmarks/results.py [--only imdb-bigru|imdb-rnn|imdb-bigru-rd0|imdb-bigru-rd25|
                                         imdb-bigru-unicode|imdb-blend|imdb-lm-ss|
                                         imdb-lm-eq|imdb-ft-eq|
                                         shakespeare-char|shakespeare-char-384] [--data DIR]

The language models (``imdb-lm-*``) read ``runs/pretrain/imdb_train_texts.txt``, the 25,000 IMDB
training reviews one per line (labels unused), written from the data set on first use.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEXTS = "runs/pretrain/imdb_train_texts.txt"  # unlabelled text for the language models
# imdb-lm-eq then imdb-ft-eq: minutes of training each, chosen so that the two commands
# together take the wall time of imdb-blend (without pretraining) on the same machine
EQ_LM_MINUTES, EQ_FT_MINUTES = 4, 2.5


def write_texts(imdb, path):
    """The IMDB training reviews, one per line (line breaks in the HTML become spaces)."""
    import re

    from xprnn.text.readers import read_imdb

    texts, _ = read_imdb(imdb, "train")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(re.sub(r"<br\s*/?>", " ", t).replace("\n", " ") for t in texts),
                   encoding="utf-8")
    tmp.replace(path)


def _word_lm(minutes, epochs, out):
    """A word-level GRU language model over the IMDB training reviews, with a sampled softmax."""
    return ["lm", "train", "--text", TEXTS, "--level", "word", "--tokenizer", "unicode",
            "--cell", "gru", "--hidden", "128", "--embedding-dim", "128", "--layers", "1",
            "--max-vocab", "20000", "--min-freq", "2", "--seq-len", "35", "--batch-size", "32",
            "--lr", "3e-3", "--epochs", str(epochs), "--max-minutes", str(minutes),
            "--valid-fraction", "0.01", "--sampled-softmax", "512", "--out", out]


def _bigru_3_epochs(imdb, text):
    """The BiGRU run for 3 epochs without early stopping."""
    return ["sentiment", "train", "--data", imdb, "--test", imdb, "--cell", "gru",
            "--bidirectional", "--pooling", "max", "--embedding-dim", "128", "--hidden", "128",
            "--dropout", "0.5", *text, "--epochs", "3", "--optimizer", "adamw", "--lr", "2e-3"]


def runs(data):
    imdb = str(data / "imdb" / "aclImdb_v1_train_test_text.tar.gz")
    shakespeare = str(data / "tinyshakespeare" / "input.txt")
    common = ["--seed", "0", "--no-progress", "--json"]
    text = ["--max-len", "400", "--truncate", "both", "--min-freq", "2", "--max-vocab", "30000",
            "--batch-size", "64", "--clip", "5", "--valid-fraction", "0.04",
            "--tokenizer", "ascii"]  # these runs predate the Unicode rule (a later option wins)
    return {
        # target: >= 88.0% test accuracy in under 45 minutes of training
        "imdb-bigru": ["sentiment", "train", "--data", imdb, "--test", imdb, "--cell", "gru",
                       "--bidirectional", "--pooling", "max", "--embedding-dim", "128",
                       "--hidden", "128", "--dropout", "0.5", *text, "--epochs", "4",
                       "--optimizer", "adamw", "--lr", "2e-3", "--patience", "2",
                       "--max-minutes", "26", "--out", "runs/imdb-bigru", *common],
        # recurrent dropout against none, 3 epochs each, same seed (docs/results.md)
        "imdb-bigru-rd0": [*_bigru_3_epochs(imdb, text), "--out", "runs/imdb-rd0", *common],
        "imdb-bigru-rd25": [*_bigru_3_epochs(imdb, text), "--recurrent-dropout", "0.25",
                            "--out", "runs/imdb-rd25", *common],
        # the Unicode word rule (the default since issue 14) against imdb-bigru-rd0's ASCII one
        "imdb-bigru-unicode": [*_bigru_3_epochs(imdb, text), "--tokenizer", "unicode",
                               "--out", "runs/imdb-unicode", "--no-blend", *common],
        # issue 16's target, >= 89.5% within 45 minutes on 2 cores: the same BiGRU blended with
        # the bag-of-words baseline (the default since the blend came)
        "imdb-blend": [*_bigru_3_epochs(imdb, text), "--tokenizer", "unicode",
                       "--out", "runs/imdb-blend", *common],
        # pretraining (issue 16): the language model the sweep's "pretrained" configuration
        # fine-tunes (15 minutes, one core in docs/results.md)
        "imdb-lm-ss": [*_word_lm(15, 3, "runs/pretrain/lm-ss"), *common],
        # IMDB with pretraining at the total time imdb-blend takes: a language model, then a
        # GRU fine-tuned from it and blended (the two run one after the other)
        "imdb-lm-eq": [*_word_lm(EQ_LM_MINUTES, 2, "runs/pretrain/lm-eq"), *common],
        "imdb-ft-eq": ["sentiment", "train", "--data", imdb, "--test", imdb,
                       "--init-from", "runs/pretrain/lm-eq", "--pooling", "max", "--dropout",
                       "0.5", "--max-len", "400", "--truncate", "both", "--batch-size", "64",
                       "--clip", "5", "--valid-fraction", "0.04", "--epochs", "10",
                       "--optimizer", "adamw", "--lr", "2e-3", "--max-minutes", str(EQ_FT_MINUTES),
                       "--out", "runs/imdb-ft-eq", *common],
        # target: the notebook's plain tanh RNN at >= 80%
        "imdb-rnn": ["sentiment", "train", "--data", imdb, "--test", imdb, "--cell", "rnn",
                     "--bidirectional", "--pooling", "max", "--embedding-dim", "128",
                     "--hidden", "128", "--dropout", "0.3", *text, "--epochs", "4",
                     "--lr", "2e-3", "--patience", "2", "--max-minutes", "20",
                     "--out", "runs/imdb-rnn", *common],
        # issue 16's target: <= 1.45 nats/char within 45 minutes (one core)
        "shakespeare-char-384": ["lm", "train", "--text", shakespeare, "--level", "char",
                                 "--cell", "lstm", "--layers", "2", "--embedding-dim", "64",
                                 "--hidden", "384", "--dropout", "0.15", "--seq-len", "100",
                                 "--batch-size", "64", "--epochs", "30", "--lr", "3e-3",
                                 "--clip", "5", "--valid-fraction", "0.1", "--max-minutes", "44",
                                 "--out", "runs/shakespeare-384", *common],
        # target: <= 1.55 nats/char on the last 10% in under 30 minutes
        "shakespeare-char": ["lm", "train", "--text", shakespeare, "--level", "char",
                             "--cell", "lstm", "--layers", "2", "--embedding-dim", "64",
                             "--hidden", "256", "--seq-len", "100", "--batch-size", "64",
                             "--epochs", "20", "--lr", "3e-3", "--clip", "5",
                             "--valid-fraction", "0.1", "--max-minutes", "29",
                             "--out", "runs/shakespeare-char", *common],
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", action="append", help="run only this one (repeatable)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        sys.exit(f"results: data sets not found at {args.data} (give --data DIR)")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    todo = runs(args.data)
    for name in args.only or list(todo):
        cmd = ["xprnn", *todo[name]]
        if TEXTS in cmd and not (REPO / TEXTS).is_file():
            write_texts(args.data / "imdb" / "aclImdb_v1_train_test_text.tar.gz", REPO / TEXTS)
        print("$", " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        if out.returncode != 0:  # say why (e.g. an earlier run's --out) and stop
            sys.exit(f"results: {name} failed (exit {out.returncode}):\n{out.stderr[-2000:]}")
        metrics = json.loads(out.stdout.strip().splitlines()[-1])
        metrics.update(run=name, wall_seconds=round(time.perf_counter() - t0, 1))
        print(json.dumps(metrics), flush=True)


if __name__ == "__main__":
    main()
