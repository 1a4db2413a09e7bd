"""Labelled text for the sentiment commands: the data options, reading every ``--data`` and
``--test`` argument (aclImdb, a folder per class, ``FILE:LABEL`` one text per line, CSV/TSV),
label ids, and text to token ids as a saved model's ``meta`` says."""

from __future__ import annotations

import argparse
import codecs
from pathlib import Path

import numpy as np

from . import _checks
from ._common import CLIError

__all__ = ["add_csv_options", "read_sets", "read_labelled", "label_ids",
           "tokenize", "word_rule", "encode", "subset", "encoding", "as_list", "IMDB_CLASSES"]

IMDB_CLASSES = ("negative", "positive")  # aclImdb's neg/pos folders, named as in the sample
DATA_HELP = ("aclImdb .tar.gz or folder, a folder per class (its sub-folders' names are the "
             "labels, one text per file), FILE:LABEL (one text per line, e.g. pos.txt:1 "
             "neg.txt:0), or a CSV/TSV file; several are read one after the other")


def encoding(text):
    """argparse type of ``--encoding``: a codec Python knows."""
    try:
        codecs.lookup(text)
    except LookupError:
        raise argparse.ArgumentTypeError(
            f"unknown text encoding {text!r} (e.g. utf-8, utf-8-sig, cp1252, latin-1)") from None
    return text


def add_csv_options(p):
    p.add_argument("--encoding", type=encoding, default="utf-8", metavar="NAME",
                   help="text encoding of the data files, e.g. cp1252 or latin-1 (default: "
                        "utf-8; a byte-order mark is dropped)")
    g = p.add_argument_group("CSV/TSV files (an error with other data)")
    g.add_argument("--text-column", default=None, metavar="C",
                   help="column name, or 0-based position (default: review)")
    g.add_argument("--label-column", default=None, metavar="C",
                   help="column name, or 0-based position (default: sentiment)")
    g.add_argument("--delimiter", default=None, metavar="D",
                   help=r"field separator, e.g. ';' or '\t' (default: tab for .tsv, else comma)")
    g.add_argument("--no-header", action="store_true",
                   help="the first row is data; give columns by position")
    g.add_argument("--quoting", choices=("none", "csv", "multiline"), default=None,
                   help="none: quotes are text, one row per line (default with a tab "
                        "delimiter); csv: CSV quoting within a line (default otherwise); "
                        "multiline: quoted texts may span lines")
    g.add_argument("--skip-bad-rows", action="store_true",
                   help="skip rows that cannot be read (wrong field count, empty text or "
                        "label, broken quoting) with a warning that lists them, instead of "
                        "stopping at the first")


def _column(text, default):
    if text is None:
        return default
    return int(text) if text.isdigit() else text


def as_list(value):
    """``--data``/``--test`` as a list (a resumed run saved by an older version has a str)."""
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _split_label(arg):
    """``(path, label)`` for ``FILE:LABEL`` (when ``arg`` is not itself a path), else
    ``(path, None)``."""
    if Path(arg).exists() or ":" not in arg:
        return Path(arg), None
    path, label = arg.rsplit(":", 1)
    if not path or not label.strip() or "/" in label or "\\" in label:
        return Path(arg), None
    return Path(path), label.strip()


def _csv_options(args):
    given = [o for o, v in (("--text-column", args.text_column),
                            ("--label-column", args.label_column),
                            ("--delimiter", args.delimiter),
                            ("--quoting", getattr(args, "quoting", None))) if v is not None]
    if args.no_header:
        given.append("--no-header")
    if getattr(args, "skip_bad_rows", False):
        given.append("--skip-bad-rows")
    return given


def _kind(p, label):
    from ..text import readers

    if label is not None:
        return "lines"
    if readers._is_tar(p) or (p.is_dir() and readers._is_imdb_folder(p)):
        return "imdb"
    return "folders" if p.is_dir() else "csv"


def _read_one(p, label, kind, args, split, option):
    """``(texts, labels)`` of one ``--data``/``--test`` argument."""
    from ..text import readers

    enc = getattr(args, "encoding", None) or "utf-8"
    if kind == "lines":
        return readers.read_class_files([(p, label)], encoding=enc)
    if kind == "imdb":
        texts, labels = readers.read_imdb(p, split, encoding=enc)
        return texts, [IMDB_CLASSES[y] for y in labels]
    if kind == "folders":
        return readers.read_folders(p, encoding=enc)
    delimiter = args.delimiter
    if delimiter in ("\\t", "tab", "TAB"):
        delimiter = "\t"
    texts, labels = readers.read_csv(
        p, text_column=_column(args.text_column, "review"),
        label_column=_column(args.label_column, "sentiment"), delimiter=delimiter,
        header=not args.no_header, encoding=enc, quoting=getattr(args, "quoting", None),
        on_bad_rows="skip" if getattr(args, "skip_bad_rows", False) else "error")
    _checks.check_header_row(texts, labels, not args.no_header, p, option)
    return texts, labels


_WHAT = {"lines": "a FILE:LABEL file", "imdb": "an aclImdb archive or folder",
         "folders": "a folder per class"}


def read_sets(paths, args, split, option):
    """``[(argument, texts, label names)]``, one entry per ``--data``/``--test`` argument; CSV
    options given for data that is not CSV/TSV are an error before anything is read."""
    parsed = [(str(a), *_split_label(str(a))) for a in as_list(paths)]
    kinds = [_kind(p, label) for _, p, label in parsed]
    given = _csv_options(args)
    if given and "csv" not in kinds:
        arg, p, label = parsed[0]
        raise CLIError(f"{option} {p}: {', '.join(given)} apply to CSV/TSV files, not to "
                       f"{_WHAT[kinds[0]]}")
    if args.no_header and "csv" in kinds and not all(
            x is not None and x.isdigit() for x in (args.text_column, args.label_column)):
        raise CLIError("--no-header needs --text-column and --label-column as 0-based "
                       "column positions, e.g. --text-column 0 --label-column 1")
    sets = []
    for (arg, p, label), kind in zip(parsed, kinds):
        try:
            with _checks.reader_warnings(option):
                texts, labels = _read_one(p, label, kind, args, split, option)
        except (ValueError, TypeError) as e:
            raise CLIError(f"{option}: {e}") from None
        sets.append((arg, texts, labels))
    return sets


def read_labelled(paths, args, split, option):
    """``(texts, label names)`` of every ``--data``/``--test`` argument together."""
    texts, labels = [], []
    for _, t, y in read_sets(paths, args, split, option):
        texts += t
        labels += y
    return texts, labels


def label_ids(labels, classes, option, where):
    from ..text.readers import labels_to_ids

    try:
        return labels_to_ids(labels, classes)[0]
    except ValueError as e:
        raise CLIError(f"{option} {where}: {e} (the classes the model was trained on)") from None


def word_rule(meta):
    """The word rule a model was trained with: ``meta["tokenizer"]["rule"]``; a model saved
    before there was a choice has none and used the ASCII rule."""
    return meta["tokenizer"].get("rule", "ascii")


def tokenize(texts, meta):
    from ..text import tokenize_words

    stop, rule = meta["tokenizer"]["stopwords"], word_rule(meta)
    return [tokenize_words(t, stopwords=stop, rule=rule) for t in texts]


def encode(token_lists, vocab):
    # A text with no tokens left (say, only stop words) still gets a prediction: it reads as one
    # unknown word, since an RNN needs at least one step.
    return [vocab.encode(toks) if toks else [vocab.unk_id] for toks in token_lists]


def subset(n, limit, rng):
    return np.sort(rng.permutation(n)[:limit]) if limit is not None and limit < n \
        else np.arange(n)
