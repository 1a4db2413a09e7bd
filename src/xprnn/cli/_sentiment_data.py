"""Labelled text for the sentiment commands: the CSV options, reading (aclImdb or CSV/TSV),
label ids, and text to token ids as a saved model's ``meta`` says."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import CLIError

__all__ = ["add_csv_options", "read_labelled", "label_ids", "tokenize", "encode", "subset",
           "IMDB_CLASSES"]

IMDB_CLASSES = ("negative", "positive")  # aclImdb's neg/pos folders, named as in the sample


def add_csv_options(p):
    g = p.add_argument_group("CSV/TSV files (an error with aclImdb archives and folders)")
    g.add_argument("--text-column", default=None, metavar="C",
                   help="column name, or 0-based position (default: review)")
    g.add_argument("--label-column", default=None, metavar="C",
                   help="column name, or 0-based position (default: sentiment)")
    g.add_argument("--delimiter", default=None, metavar="D",
                   help=r"field separator, e.g. ';' or '\t' (default: tab for .tsv, else comma)")
    g.add_argument("--no-header", action="store_true",
                   help="the first row is data; give columns by position")


def _column(text, default):
    if text is None:
        return default
    return int(text) if text.isdigit() else text


def read_labelled(path, args, split, option):
    """``(texts, label names)`` from an aclImdb archive/folder or a CSV/TSV file."""
    from ..text import readers

    p = Path(path)
    imdb = p.is_dir() or readers._is_tar(p)
    csv_given = [o for o, v in (("--text-column", args.text_column),
                                ("--label-column", args.label_column),
                                ("--delimiter", args.delimiter)) if v is not None]
    if args.no_header:
        csv_given.append("--no-header")
    if imdb and csv_given:
        raise CLIError(f"{option} {p}: {', '.join(csv_given)} apply to CSV/TSV files, not to "
                       "an aclImdb archive or folder")
    if imdb:
        options = {"split": split}
    else:
        delimiter = args.delimiter
        if delimiter in ("\\t", "tab", "TAB"):
            delimiter = "\t"
        if args.no_header and not all(
                x is not None and x.isdigit() for x in (args.text_column, args.label_column)):
            raise CLIError("--no-header needs --text-column and --label-column as 0-based "
                           "column positions, e.g. --text-column 0 --label-column 1")
        options = {"text_column": _column(args.text_column, "review"),
                   "label_column": _column(args.label_column, "sentiment"),
                   "delimiter": delimiter, "header": not args.no_header}
    try:
        texts, labels = readers.read_dataset(p, **options)
    except (ValueError, TypeError) as e:
        raise CLIError(f"{option}: {e}") from None
    if imdb:
        labels = [IMDB_CLASSES[y] for y in labels]
    return texts, labels


def label_ids(labels, classes, option, where):
    from ..text.readers import labels_to_ids

    try:
        return labels_to_ids(labels, classes)[0]
    except ValueError as e:
        raise CLIError(f"{option} {where}: {e} (the classes the model was trained on)") from None


def tokenize(texts, meta):
    from ..text import tokenize_words

    stop = meta["tokenizer"]["stopwords"]
    return [tokenize_words(t, stopwords=stop) for t in texts]


def encode(token_lists, vocab):
    # A text with no tokens left (say, only stop words) still gets a prediction: it reads as one
    # unknown word, since an RNN needs at least one step.
    return [vocab.encode(toks) if toks else [vocab.unk_id] for toks in token_lists]


def subset(n, limit, rng):
    return np.sort(rng.permutation(n)[:limit]) if limit is not None and limit < n \
        else np.arange(n)
