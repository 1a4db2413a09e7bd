"""Checks the commands make on what they are given, as warnings or errors before any work:
labels that look like mistakes, a saved model's ``meta``, and a model too big to fit in
memory."""

from __future__ import annotations

import math
import os
import re
import sys
import warnings
from collections import Counter
from contextlib import contextmanager

from ._common import CLIError

__all__ = ["warn", "reader_warnings", "check_labels", "check_header_row", "check_meta",
           "check_size", "MIN_EXAMPLES"]

MIN_EXAMPLES = 5  # fewer examples than this in a class is worth a warning
_HEADER_WORDS = {"text", "texts", "review", "reviews", "sentence", "sentences", "document",
                 "content", "comment", "tweet", "label", "labels", "sentiment", "class",
                 "category", "target", "polarity", "y", "rating", "score"}
_OPTIMIZER_COPIES = 4  # weights, gradients and Adam's two moments


def warn(message):
    print(f"xprnn: warning: {message}", file=sys.stderr, flush=True)


@contextmanager
def reader_warnings(option):
    """Print a reader's warnings (rows skipped, files not read) as ``xprnn: warning:`` lines."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        warn(f"{option}: {w.message}")


def _key(label):
    return " ".join(str(label).split()).casefold()


def check_labels(labels, option):
    """Warn about labels that differ only in case or spacing (they would be separate classes)
    and about classes with fewer than :data:`MIN_EXAMPLES` examples."""
    counts = Counter(labels)
    groups = {}
    for label in counts:
        groups.setdefault(_key(label), []).append(label)
    for spellings in groups.values():
        if len(spellings) > 1:
            said = " and ".join(f"{s!r} ({counts[s]} rows)" for s in sorted(spellings, key=str))
            warn(f"{option}: labels {said} differ only in case or spacing, so they are "
                 f"{len(spellings)} separate classes; write them one way in the data if they "
                 "are one class")
    few = sorted((c for c in counts if counts[c] < MIN_EXAMPLES), key=str)
    if few:
        said = ", ".join(f"{c!r} ({counts[c]})" for c in few)
        warn(f"{option}: class(es) with fewer than {MIN_EXAMPLES} examples: {said} of "
             f"{len(labels)} rows; too few to learn or to measure")


def _wordlike(text):
    return re.fullmatch(r"[A-Za-z_][\w .-]{0,30}", text.strip()) is not None


def check_header_row(texts, labels, header, where, option):
    """Warn when the first data row of a CSV/TSV file looks like a header: its label occurs in
    no other row and its text and label are short names (``sentence``, ``label``, ...)."""
    if len(labels) < 3 or labels.count(labels[0]) != 1:
        return
    text, label = texts[0].strip(), str(labels[0]).strip()
    named = text.casefold() in _HEADER_WORDS or label.casefold() in _HEADER_WORDS
    if not (named or (_wordlike(text) and _wordlike(label) and " " not in text)):
        return
    fix = ("it is read as data because of --no-header: drop --no-header (and name the columns)"
           if not header else "is the header repeated, or are there two header lines?")
    warn(f"{option} {where}: the first data row ({text[:40]!r}, {label[:40]!r}) looks like a "
         f"header (its label occurs in no other row); {fix}")


def check_meta(model, where, task):
    """The parts of a saved model's ``meta`` the commands use, checked: a ``CLIError`` naming
    the first that is missing or malformed (a checkpoint is untrusted input)."""
    from ..text import Vocabulary

    meta = model.meta
    need = {"vocab": dict, "tokenizer": dict}
    if task == "sentiment":
        need.update(classes=list, max_len=int, truncate=str)
    for key, kind in need.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            got = "nothing" if key not in meta else type(meta[key]).__name__
            article = "an" if kind.__name__[0] in "aeiou" else "a"
            raise CLIError(f"--model {where}: the saved meta needs {key!r} as {article} "
                           f"{kind.__name__}, found {got}; was it saved by xprnn {task} train?")
    try:
        vocab = Vocabulary.from_dict(meta["vocab"])
    except (ValueError, TypeError, KeyError) as e:
        raise CLIError(f"--model {where}: the saved vocabulary is malformed: {e}") from None
    if len(vocab) != model.config.get("vocab_size"):
        raise CLIError(f"--model {where}: the saved vocabulary has {len(vocab)} tokens, the "
                       f"model {model.config.get('vocab_size')}")
    tok = meta["tokenizer"]
    if task == "sentiment":
        classes = meta["classes"]
        if len(classes) != model.config.get("num_classes") or not all(
                isinstance(c, str) for c in classes):
            raise CLIError(f"--model {where}: the saved classes {classes!r:.80} do not match "
                           f"the model's {model.config.get('num_classes')} outputs")
        if meta["truncate"] not in ("head", "tail", "both") or meta["max_len"] < 1:
            raise CLIError(f"--model {where}: the saved max_len/truncate are malformed")
        if tok.get("stopwords") not in (None, "english") or tok.get("rule", "ascii") not in (
                "unicode", "ascii"):
            raise CLIError(f"--model {where}: the saved tokenizer is malformed: {tok!r:.80}")
    elif tok.get("level") not in ("char", "word") or not isinstance(tok.get("lowercase"), bool):
        raise CLIError(f"--model {where}: the saved tokenizer is malformed: {tok!r:.80}")
    return vocab


def _memory():
    """Bytes of physical memory of this machine, or None where it cannot be told."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _bytes(n):
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def check_size(cls, config, dtype, options, memory=None):
    """A ``CLIError`` before anything is allocated when a model of ``cls(**config)`` would not
    fit in this machine's memory (its weights, gradients and optimizer state)."""
    from ..nn.shapes import expected_shapes

    try:
        shapes = expected_shapes(cls, config)
    except ValueError as e:
        raise CLIError(f"{options}: {e}") from None
    params = sum(math.prod(s) for s in shapes.values())
    need = params * (8 if dtype == "float64" else 4) * _OPTIMIZER_COPIES
    memory = _memory() if memory is None else memory
    if memory is not None and need > memory:
        raise CLIError(f"the model would have {params:,} parameters, about {_bytes(need)} with "
                       f"gradients and optimizer state, more than the {_bytes(memory)} of "
                       f"memory here; use smaller {options}")
    return params
