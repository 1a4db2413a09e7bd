"""Each process's rows of every batch (data parallelism): the global batches come from the same
seeded order in every process, and process ``r`` of ``n`` keeps the ``r``-th contiguous block of
rows of each one.

A batch is a tuple whose arrays share their first axis, the row: ``(ids, lengths, labels)`` of a
classifier, ``(inputs, targets)`` of a language model (a language model's rows are streams, and
each process keeps the same rows from chunk to chunk, so its carried state stays its own).
"""

from __future__ import annotations

import numpy as np

__all__ = ["row_range", "take_rows", "Shards", "SizedShards", "split_rows", "join_rows"]


def row_range(rows, rank, size):
    """``(lo, hi)``: the rows of process ``rank`` out of ``size``; block sizes differ by one at
    most, and a batch of fewer rows than processes leaves some processes without a row."""
    return rank * rows // size, (rank + 1) * rows // size


def _rows(batch):
    first = batch[0]
    return int(first.shape[0]) if hasattr(first, "shape") else len(first)


def take_rows(batch, lo, hi):
    """Rows ``lo:hi`` of every array of ``batch`` (``None`` entries stay ``None``)."""
    return tuple(None if x is None else x[lo:hi] for x in batch)


def split_rows(state, rank, size):
    """This process's rows of a recurrent state carried between batches (arrays, or a tuple of
    arrays, holding the rows on axis 1: ``(layers, rows, H)``); a process without rows keeps
    row 0, as :class:`Shards` gives it."""
    arrays = state if isinstance(state, tuple) else (state,)
    lo, hi = row_range(int(arrays[0].shape[1]), rank, size)
    lo, hi = (lo, hi) if hi > lo else (0, 1)
    mine = tuple(a[:, lo:hi, ...] for a in arrays)
    return mine if isinstance(state, tuple) else mine[0]


def join_rows(parts, batch, size):
    """The inverse of :func:`split_rows` on the host: ``parts[r]`` is process ``r``'s list of
    NumPy state arrays, ``batch`` the last global batch (which tells the processes that had no
    rows; ``None``: all had some). Returns the list of arrays of every row."""
    if batch is not None:
        total = _rows(batch)
        parts = [p for r, p in enumerate(parts) if row_range(total, r, size)[1] >
                 row_range(total, r, size)[0]]
    return [np.concatenate([p[i] for p in parts], axis=1) for i in range(len(parts[0]))]


class Shards:
    """Iterate this process's share of every batch of ``batches``.

    Parameters
    ----------
    batches : re-iterable of tuples of arrays (first axis: rows)
        The global batches, the same in every process.
    rank, size : int
        This process and the number of processes.
    on_batch : callable ``(global_batch, rows, total)``, optional
        Told of each batch just before its share is yielded: the global batch, this process's
        number of rows and the batch's.
    keep_empty : bool
        A process whose share of a batch is empty (a last batch of fewer rows than processes)
        still gets a batch, the first row, so that it takes part in the step's all-reduce;
        ``on_batch`` is told ``rows=0`` and the step weighs that row by zero. Without
        ``keep_empty`` (evaluation, which communicates once at the end) the batch is skipped.
    """

    def __init__(self, batches, rank, size, on_batch=None, keep_empty=True):
        self.batches, self.rank, self.size = batches, rank, size
        self.on_batch, self.keep_empty = on_batch, keep_empty

    # ``fit`` saves and restores the data order's epoch counter; pass it through when there is one
    @property
    def epoch(self):
        try:
            return self.batches.epoch
        except AttributeError:
            raise AttributeError("the batches have no epoch counter") from None

    @epoch.setter
    def epoch(self, value):
        self.batches.epoch = value

    def __iter__(self):
        for batch in self.batches:
            total = _rows(batch)
            lo, hi = row_range(total, self.rank, self.size)
            if hi == lo and not self.keep_empty:
                continue
            if self.on_batch is not None:
                self.on_batch(batch, hi - lo, total)
            yield take_rows(batch, lo, hi) if hi > lo else take_rows(batch, 0, 1)


class SizedShards(Shards):
    """:class:`Shards` of batches with a ``len()`` (the number of global batches)."""

    def __len__(self):
        return len(self.batches)
