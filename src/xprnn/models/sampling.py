"""Choosing the next token from one row of logits, on the host (generation is sequential and
reads one row of ``V`` numbers per step, so NumPy is the right place for it)."""

from __future__ import annotations

import numpy as np

__all__ = ["sample_next"]


def sample_next(logits, rng, temperature=1.0, top_k=None, greedy=False):
    """The next token id from NumPy ``logits (V,)``.

    ``greedy`` takes the argmax; otherwise a draw from ``softmax(logits / temperature)``
    restricted to the ``top_k`` largest logits when given, using NumPy generator ``rng``.
    """
    z = np.asarray(logits, dtype=np.float64)
    if greedy:
        return int(np.argmax(z))
    z = z / temperature
    if top_k is not None:
        z[z < np.sort(z)[-top_k]] = -np.inf
    p = np.exp(z - z.max())
    return int(rng.choice(len(p), p=p / p.sum()))
