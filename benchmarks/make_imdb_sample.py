"""Derive the shipped demo sample ``src/xprnn/data/imdb_sample.csv.gz`` from aclImdb.

Only aclImdb's *training* split is used, so the real test split stays unseen. Selection rule:

1. keep the reviews of at most ``--max-chars`` characters (raw text, ``<br />`` included) and
   drop repeated texts (aclImdb's train split holds 96 extra copies of 92 reviews), keeping the
   first copy by file name, so no review can land in both of our splits;
2. per label (neg, pos), rank them by ``sha256(f"{seed}:{source}")`` (a seeded pseudo-random
   order that depends on no library's random number generator) and take the first
   ``n_train / 2`` for our train split and the next ``n_test / 2`` for our test split;
3. within each split, order the rows by the same hash (so labels are interleaved).

The gzip stream is written with mtime 0, so the output is byte-for-byte reproducible::

    python benchmarks/make_imdb_sample.py  # defaults give the shipped file
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
from pathlib import Path

from xprnn.text.readers import read_imdb

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "imdb" / "aclImdb_v1_train_test_text.tar.gz"
DEFAULT_OUT = ROOT / "src" / "xprnn" / "data" / "imdb_sample.csv.gz"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def rank(seed: int, source: str) -> str:
    return hashlib.sha256(f"{seed}:{source}".encode()).hexdigest()


def select(texts, labels, sources, *, seed, max_chars, n_train, n_test):
    """Rows ``(review, sentiment, split, source)``: train rows first, then test rows."""
    if n_train % 2 or n_test % 2:
        raise ValueError("n_train and n_test must be even (balanced classes)")
    first = {}  # text -> (source, label) of its first copy in file-name order
    for t, y, s in sorted(zip(texts, labels, sources, strict=True), key=lambda r: r[2]):
        if len(t) <= max_chars and t not in first:
            first[t] = (s, y)
    splits = {"train": [], "test": []}
    for label, name in ((0, "negative"), (1, "positive")):
        pool = [(rank(seed, s), t, s) for t, (s, y) in first.items() if y == label]
        need = (n_train + n_test) // 2
        if len(pool) < need:
            raise ValueError(f"{len(pool)} {name} reviews of <= {max_chars} chars, need {need}")
        pool.sort()
        splits["train"] += [(h, t, name, s) for h, t, s in pool[: n_train // 2]]
        splits["test"] += [(h, t, name, s) for h, t, s in pool[n_train // 2 : need]]
    rows = []
    for split in ("train", "test"):
        rows += [(t, name, split, s) for _, t, name, s in sorted(splits[split])]
    return rows


def write_csv_gz(rows, out: Path) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["review", "sentiment", "split", "source"])
    writer.writerows(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f, gzip.GzipFile("", "wb", 9, f, mtime=0) as gz:
        gz.write(buf.getvalue().encode("utf-8"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="aclImdb tar.gz or folder")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-chars", type=int, default=1000)
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--n-test", type=int, default=1000)
    args = ap.parse_args(argv)

    texts, labels, sources = read_imdb(args.source, "train", with_sources=True)
    short = [
        len({t for t, y in zip(texts, labels, strict=True) if y == k and len(t) <= args.max_chars})
        for k in (0, 1)
    ]
    rows = select(
        texts,
        labels,
        sources,
        seed=args.seed,
        max_chars=args.max_chars,
        n_train=args.n_train,
        n_test=args.n_test,
    )
    write_csv_gz(rows, args.out)
    if args.source.is_file():
        print(f"source   {args.source} sha256 {sha256_file(args.source)}")
    print(
        f"pool     {sum(short)} distinct texts among {len(texts)} train reviews have "
        f"<= {args.max_chars} characters ({short[0]} negative, {short[1]} positive)"
    )
    for split in ("train", "test"):
        sel = [r for r in rows if r[2] == split]
        pos = sum(r[1] == "positive" for r in sel)
        chars = sum(len(r[0]) for r in sel)
        print(f"{split:8s} {len(sel)} rows ({pos} positive), {chars} characters")
    print(f"wrote    {args.out} ({args.out.stat().st_size} bytes) sha256 {sha256_file(args.out)}")


if __name__ == "__main__":
    main()
