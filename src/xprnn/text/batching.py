"""Integer sequences to padded NumPy batches: padding, truncation, bucketed shuffling and the
contiguous chunks of a language-model stream (for truncated BPTT).

This is data handling, not maths: NumPy ``int64`` arrays that a training loop moves to its
backend afterwards.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pad_batch", "batches", "Batches", "lm_batches", "TRUNCATE_MODES"]

TRUNCATE_MODES = ("head", "tail", "both")


def _check_int(name, value, minimum, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        none = "None or " if allow_none else ""
        raise ValueError(f"{name} must be {none}an int >= {minimum}, got {value!r}")


def _as_ids(seq, row) -> np.ndarray:
    a = np.asarray(seq)
    if a.ndim != 1:
        raise ValueError(f"sequence {row} must be 1-D, got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(
            f"sequence {row} is empty; an RNN needs at least one step per sequence "
            "(drop empty texts, e.g. reviews made only of stop words, before batching)"
        )
    if a.dtype.kind not in "iu":
        raise TypeError(f"sequence {row} must hold integer ids, got dtype {a.dtype}")
    return a


def _truncate(a, max_len, truncate):
    n = a.shape[0]
    if max_len is None or n <= max_len:
        return a
    if truncate == "head":
        return a[:max_len]
    if truncate == "tail":
        return a[n - max_len :]
    first = (max_len + 1) // 2  # "both": ceil(max_len / 2) from the start, the rest from the end
    return np.concatenate([a[:first], a[n - (max_len - first) :]])


def _check_truncate(max_len, truncate):
    _check_int("max_len", max_len, 1, allow_none=True)
    if truncate not in TRUNCATE_MODES:
        raise ValueError(f"truncate must be one of {TRUNCATE_MODES}, got {truncate!r}")


def pad_batch(sequences, max_len=None, truncate="head", pad_id=0):
    """Truncate and right-pad integer sequences into one array.

    Parameters
    ----------
    sequences : sequence of sequences of int
        B non-empty id sequences.
    max_len : int, optional
        Longest kept length; longer sequences are cut.
    truncate : {"head", "tail", "both"}
        Keep the first ``max_len`` ids, the last ones, or the first ``ceil(max_len / 2)`` and
        the last ``floor(max_len / 2)``.
    pad_id : int

    Returns
    -------
    ids : ndarray of int64, shape (B, T)
        T is the longest length after truncation.
    lengths : ndarray of int64, shape (B,)
        Lengths after truncation, all >= 1.
    """
    _check_truncate(max_len, truncate)
    _check_int("pad_id", pad_id, np.iinfo(np.int64).min)
    rows = [_truncate(_as_ids(s, i), max_len, truncate) for i, s in enumerate(sequences)]
    if not rows:
        raise ValueError("sequences is empty: a batch needs at least one sequence")
    lengths = np.array([r.shape[0] for r in rows], dtype=np.int64)
    ids = np.full((len(rows), int(lengths.max())), pad_id, dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : r.shape[0]] = r
    return ids, lengths


class Batches:
    """Epochs of padded ``(ids, lengths, labels)`` batches; see :func:`batches`."""

    def __init__(
        self,
        sequences,
        labels=None,
        batch_size=32,
        shuffle=True,
        seed=0,
        bucket=True,
        max_len=None,
        truncate="head",
        pool_batches=50,
    ):
        _check_int("batch_size", batch_size, 1)
        _check_int("seed", seed, 0, allow_none=True)
        _check_int("pool_batches", pool_batches, 1)
        _check_truncate(max_len, truncate)
        self._rows = [_as_ids(s, i) for i, s in enumerate(sequences)]
        if not self._rows:
            raise ValueError("sequences is empty: nothing to batch")
        self._lengths = np.array([r.shape[0] for r in self._rows], dtype=np.int64)
        if max_len is not None:
            self._lengths = np.minimum(self._lengths, max_len)
        self.labels = None
        if labels is not None:
            y = np.asarray(labels)
            if y.shape[:1] != (len(self._rows),):
                raise ValueError(
                    f"labels must have one entry per sequence ({len(self._rows)}), "
                    f"got shape {y.shape}"
                )
            if y.dtype.kind in "biu":
                y = y.astype(np.int64)
            elif y.dtype.kind != "f":
                raise TypeError(
                    f"labels must be numbers, got dtype {y.dtype}; turn class names into ids "
                    "with xprnn.readers.labels_to_ids"
                )
            self.labels = y
        self.batch_size, self.shuffle, self.seed, self.bucket = batch_size, shuffle, seed, bucket
        self.max_len, self.truncate, self.pool_batches = max_len, truncate, pool_batches
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self._rows) // self.batch_size)

    def order(self, epoch: int) -> list[np.ndarray]:
        """The example indices of each batch of epoch ``epoch`` (a pure function of the seed)."""
        n, bs = len(self._rows), self.batch_size
        # One generator per (seed, epoch): every epoch differs, and any epoch can be replayed.
        rng = np.random.default_rng(None if self.seed is None else [self.seed, epoch])
        idx = rng.permutation(n) if self.shuffle else np.arange(n)
        if not self.bucket:
            return [idx[i : i + bs] for i in range(0, n, bs)]
        # Sort by length inside pools of `pool_batches` batches: batches hold similar lengths
        # (little padding) while which examples meet in a batch stays random.
        pool, chunks = bs * self.pool_batches, []
        for start in range(0, n, pool):
            p = idx[start : start + pool]
            p = p[np.argsort(self._lengths[p], kind="stable")]
            chunks.extend(p[i : i + bs] for i in range(0, p.shape[0], bs))
        if self.shuffle:
            chunks = [chunks[i] for i in rng.permutation(len(chunks))]
        return chunks

    def __iter__(self):
        chunks = self.order(self.epoch)
        self.epoch += 1
        return self._emit(chunks)

    def _emit(self, chunks):
        for c in chunks:
            ids, lengths = pad_batch([self._rows[i] for i in c], self.max_len, self.truncate)
            yield ids, lengths, (None if self.labels is None else self.labels[c])


def batches(
    sequences,
    labels=None,
    batch_size=32,
    shuffle=True,
    seed=0,
    bucket=True,
    max_len=None,
    truncate="head",
) -> Batches:
    """Padded mini-batches for sequence classification, one epoch per ``for`` loop.

    Parameters
    ----------
    sequences : sequence of sequences of int
        N non-empty id sequences (e.g. ``vocab.encode(tokens)``).
    labels : sequence of numbers, optional
        N labels (class ids or floats).
    batch_size : int
    shuffle : bool
        Shuffle the examples (and, with ``bucket``, the batch order) every epoch.
    seed : int or None
        Epoch ``e`` uses ``numpy.random.default_rng([seed, e])``: a new order every epoch,
        the same sequence of epochs for the same seed. None draws fresh entropy.
    bucket : bool
        Sort by length within pools of 50 batches, so batches need little padding.
    max_len, truncate
        As in :func:`pad_batch`.

    Returns
    -------
    Batches
        Iterating yields ``(ids (B, T) int64, lengths (B,) int64, labels (B,) or None)``; every
        example appears exactly once per epoch; ``len()`` is the number of batches,
        ``ceil(N / batch_size)`` (only the last batch may be smaller).
    """
    return Batches(sequences, labels, batch_size, shuffle, seed, bucket, max_len, truncate)


def lm_batches(ids_1d, batch_size, seq_len):
    """Chunks of one long id stream for language models trained with truncated BPTT.

    The stream is cut into ``batch_size`` contiguous rows of ``L = len(ids_1d) // batch_size``
    ids (the remainder is dropped); chunk ``k`` covers columns ``k*seq_len ..`` of every row, so
    row ``b`` of chunk ``k + 1`` continues row ``b`` of chunk ``k`` and a model may carry its
    hidden state across chunks.

    Returns
    -------
    iterator of (inputs, targets), ndarray of int64, shape (batch_size, T)
        ``targets[:, t] == inputs[:, t + 1]`` within the stream; T = ``seq_len`` except for a
        shorter last chunk; ``ceil((L - 1) / seq_len)`` chunks in all.
    """
    _check_int("batch_size", batch_size, 1)
    _check_int("seq_len", seq_len, 1)
    data = np.asarray(ids_1d)
    if data.ndim != 1 or data.dtype.kind not in "iu":
        raise TypeError(f"ids_1d must be a 1-D sequence of int ids, got {data.dtype} {data.shape}")
    L = data.shape[0] // batch_size
    if L < 2:
        raise ValueError(
            f"ids_1d has {data.shape[0]} ids, too few for batch_size={batch_size}: each row needs "
            "at least 2 (an input and its target)"
        )
    rows = data[: L * batch_size].astype(np.int64).reshape(batch_size, L)

    def chunks():
        for t in range(0, L - 1, seq_len):
            T = min(seq_len, L - 1 - t)
            yield rows[:, t : t + T].copy(), rows[:, t + 1 : t + 1 + T].copy()

    return chunks()
