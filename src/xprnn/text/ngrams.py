"""Bags of n-grams: the features of the bag-of-words baseline (:mod:`xprnn.models.bow`).

A text's tokens become the set of its distinct n-grams (unigrams and bigrams by default), each
mapped to an integer id by a table built from the training texts. Id 0 is reserved for padding
and for "no known n-gram", so a batch is padded exactly like token ids.

Ids come from a table, not from hashing: Python's string hash changes from process to process,
and a table also keeps every feature readable (``features[i]``).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

__all__ = ["ngrams", "NgramTable"]


def ngrams(tokens, n=2):
    """The distinct 1- to ``n``-grams of ``tokens``, each as one string (words joined by a space).

    >>> sorted(ngrams(["not", "good", "not"]))
    ['good', 'good not', 'not', 'not good']
    """
    out = set(tokens)
    for k in range(2, n + 1):
        out.update(" ".join(tokens[i:i + k]) for i in range(len(tokens) - k + 1))
    return out


class NgramTable:
    """Ids of the n-grams seen in at least ``min_freq`` training texts.

    Parameters
    ----------
    features : list of str
        The n-grams, most frequent first; the n-gram ``features[i]`` has id ``i + 1``.
    n : int
        The longest n-gram.
    """

    def __init__(self, features, n=2):
        self.features, self.n = list(features), int(n)
        self.index = {f: i + 1 for i, f in enumerate(self.features)}

    def __len__(self):
        """The number of ids, padding included."""
        return len(self.features) + 1

    @classmethod
    def build(cls, token_lists, n=2, min_freq=2, max_size=200_000):
        """The table of the n-grams in at least ``min_freq`` of ``token_lists`` (document
        frequency: one long text repeating a phrase does not make it a feature), the
        ``max_size`` most frequent ones, ties broken alphabetically so the ids never depend on
        the order of the texts."""
        if n < 1 or min_freq < 1 or max_size < 1:
            raise ValueError(f"n, min_freq and max_size must be positive, got {n}, {min_freq}, "
                             f"{max_size}")
        df = Counter()
        for tokens in token_lists:
            df.update(ngrams(tokens, n))
        kept = sorted((f for f, c in df.items() if c >= min_freq), key=lambda f: (-df[f], f))
        return cls(kept[:max_size], n)

    def encode(self, tokens):
        """Sorted ids of the known n-grams of ``tokens``, ``int64``; ``[0]`` when none is
        known (the padding id, which carries no weight)."""
        index = self.index
        ids = sorted(index[f] for f in ngrams(tokens, self.n) if f in index)
        return np.array(ids or [0], dtype=np.int64)
