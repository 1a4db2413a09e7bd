"""The baseline that ``sentiment train`` prints beside its recurrent model: a logistic regression
on the same rows' unigrams and bigrams (:mod:`xprnn.models.bow`), trained in seconds.

A recurrent classifier has to earn its cost; on short texts and small data sets a bag of words is
hard to beat, and a user should see at once whether the RNN did.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["add_option", "fit_and_test", "NGRAMS"]

NGRAMS = 2  # unigrams and bigrams
MIN_DF = 2  # an n-gram seen in one training text only cannot generalise


def add_option(parser):
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="skip the bag-of-words logistic regression that is otherwise "
                             "trained on the same split, reported beside the model and blended "
                             "with it (so: no blend either)")


def fit_and_test(tokens, y, tr, va, tests, num_classes, args, xp, device):
    """Fit the baseline on rows ``tr`` of ``tokens``/``y`` (weight decay and epoch picked on
    rows ``va``, or on a tenth of ``tr`` when there is no validation split) and test it.

    Parameters
    ----------
    tokens : list of list of str
        Every row's tokens, as the recurrent model sees them (before truncation).
    y : ndarray (N,) of class ids
    tr, va : ndarray of row indices
    tests : list of ``(where, token_lists, class_ids)`` or None
    num_classes : int

    Returns
    -------
    record : dict
        ``features``, ``weight_decay``, ``epoch``, ``valid_accuracy``, ``seconds`` and, with
        tests, ``test_size``, ``test_accuracy`` and ``tests`` (one record per set).
    model : BagOfNgrams
    table : NgramTable
        Its n-grams.
    """
    from ..models.bow import fit_baseline
    from ..text.batching import batches
    from ..text.ngrams import NgramTable
    from ..training import evaluate

    start = time.perf_counter()
    if va.size == 0 and tr.size >= 10:  # it still needs rows to choose its regularisation on
        keep = np.random.default_rng([args.seed, 2]).permutation(tr)
        va, tr = keep[: tr.size // 10], keep[tr.size // 10:]
    elif va.size == 0:  # a handful of rows: choose on the training rows themselves
        va = tr
    table = NgramTable.build([tokens[i] for i in tr], n=NGRAMS, min_freq=MIN_DF)
    enc = [table.encode(t) for t in tokens]

    def make(rows, labels, shuffle):
        return batches(rows, labels, 32 if shuffle else 256, shuffle=shuffle, seed=args.seed)

    model, rec = fit_baseline(make([enc[i] for i in tr], y[tr], True),
                              make([enc[i] for i in va], y[va], False), len(table),
                              num_classes, xp=xp, device=device, dtype=args.dtype)
    result = {"features": len(table) - 1, **rec}
    if tests:
        parts = []
        for where, token_lists, labels in tests:
            m = evaluate(model, make([table.encode(t) for t in token_lists], labels, False))
            parts.append({"data": where, "size": len(labels), "accuracy": m["accuracy"]})
        n = sum(p["size"] for p in parts)
        result.update(test_size=n, tests=parts,
                      test_accuracy=sum(p["accuracy"] * p["size"] for p in parts) / n)
    result["seconds"] = time.perf_counter() - start
    return result, model, table


def describe(r):
    """One line for the console."""
    test = f", test accuracy {r['test_accuracy']:.4f}" if r.get("test_accuracy") is not None \
        else ""
    return (f"baseline: logistic regression on {r['features']:,} uni- and bigrams (weight decay "
            f"{r['weight_decay']:g}, epoch {r['epoch']}), valid accuracy "
            f"{r['valid_accuracy']:.4f}{test} ({r['seconds']:.1f} s)")
