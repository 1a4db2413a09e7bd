"""Embedding lookup: forward is a row gather, backward a scatter-add of the output gradients.

With ``W`` of shape ``(V, D)`` and integer ids of any shape ``S``::

    y[s]  = W[ids[s]]                                   y: S + (D,)
    dW[r] = sum(dy[s] for s with ids[s] == r)           dW: (V, D), via ``index_add``

Repeated ids add up (``dW[ids] += dy`` would keep one of them); the ``padding_idx`` row, if any,
gets no gradient, as in ``torch.nn.Embedding``.
"""

from __future__ import annotations

import math
import numbers
import weakref
from typing import NamedTuple

import numpy as np

from ..backend import check_float, device_of, index_add, namespace
from . import shapes
from .inputs import check_cache
from .module import Module

__all__ = ["embedding", "embedding_backward", "Embedding", "EmbeddingCache"]


class EmbeddingCache(NamedTuple):
    """What :func:`embedding_backward` needs from :func:`embedding`; :meth:`Embedding.forward`
    adds the layer that made it, which :meth:`Embedding.backward` checks."""

    ids: object  # flat integer ids (N,)
    shape: tuple  # S, the shape of the ids
    num_embeddings: int
    owner: object = None  # weak reference to the Embedding whose forward made the cache


def _check_ids(ids, num_embeddings, *, xp):
    if not xp.isdtype(ids.dtype, "integral"):
        raise TypeError(f"ids must be an integer array, got dtype {ids.dtype}")
    if math.prod(ids.shape) == 0:
        return
    # one device-to-host read in the common case; the min and max only to word the error
    if bool(xp.any((ids < 0) | (ids >= num_embeddings))):
        lo, hi = int(xp.min(ids)), int(xp.max(ids))
        raise ValueError(
            f"ids must lie in [0, {num_embeddings}) (num_embeddings={num_embeddings}), "
            f"got min {lo} and max {hi}"
        )


def embedding(W, ids, *, xp):
    """Rows of ``W`` picked by ``ids``.

    Parameters
    ----------
    W : array, shape (V, D)
    ids : integer array, any shape S, entries in [0, V)
    xp : namespace

    Returns
    -------
    y : array, shape S + (D,)
    cache : EmbeddingCache
        What :func:`embedding_backward` needs: the flat ids, ``S`` and ``V``.
    """
    flat = xp.reshape(ids, (-1,))
    if flat.dtype not in (xp.int32, xp.int64):  # torch's take accepts no other index dtype
        flat = xp.astype(flat, xp.int64)
    y = xp.reshape(xp.take(W, flat, axis=0), (*ids.shape, W.shape[1]))
    return y, EmbeddingCache(flat, tuple(ids.shape), W.shape[0])


def embedding_backward(cache, dy, *, xp, padding_idx=None):
    """Gradient of :func:`embedding` with respect to ``W``.

    Parameters
    ----------
    cache : EmbeddingCache from :func:`embedding`
    dy : array, shape S + (D,)
    xp : namespace
    padding_idx : int, optional
        Row that receives no gradient.

    Returns
    -------
    dW : array, shape (V, D), dtype of ``dy``
    """
    flat, V = cache.ids, cache.num_embeddings
    dy = xp.reshape(dy, (flat.shape[0], dy.shape[-1]))
    if padding_idx is not None:
        # drop the padding tokens before summing (``where``, not a 0/1 product, so even nan/inf
        # there cannot reach the sums); their row then sums nothing but zeros: exactly zero
        keep = flat != padding_idx
        dy = xp.where(keep[:, None], dy, xp.zeros((), dtype=dy.dtype, device=device_of(dy)))
    return index_add(V, flat, dy, xp=xp)


class Embedding(Module):
    """Table of ``num_embeddings`` vectors of size ``embedding_dim`` (``torch.nn.Embedding``).

    Parameters
    ----------
    num_embeddings : int
        Vocabulary size ``V``.
    embedding_dim : int
        Vector size ``D``.
    padding_idx : int, optional
        Row initialised to zeros that receives no gradient; negative values count from the end.
    dtype, device, xp : optional
        Backend of the parameters (NumPy float32 on the CPU by default).
    seed : int, optional
        Seed of ``numpy.random.default_rng`` for the N(0, 1) initialisation.

    Attributes
    ----------
    params : dict
        ``{"weight": (V, D)}``.
    """

    def __init__(
        self,
        num_embeddings,
        embedding_dim,
        padding_idx=None,
        *,
        dtype=None,
        device=None,
        xp=None,
        seed=None,
    ):
        for name, n in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n <= 0:
                raise ValueError(f"{name} must be a positive int, got {n!r}")
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, numbers.Integral):
                raise TypeError(f"padding_idx must be an int or None, got {padding_idx!r}")
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(
                    f"padding_idx must be in [-{num_embeddings}, {num_embeddings}), "
                    f"got {padding_idx}"
                )
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        # N(0, 1) like torch.nn.Embedding, drawn in NumPy so every backend starts equal
        W = np.random.default_rng(seed).standard_normal((self.num_embeddings, embedding_dim))
        if padding_idx is not None:
            W[padding_idx] = 0.0
        config = {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                  "padding_idx": padding_idx}
        self._setup({"weight": W}, config=config, xp=xp, device=device, dtype=dtype)

    @classmethod
    def param_shapes(cls, config):
        a = shapes.arguments(cls.__init__, config)
        return shapes.embedding_shapes("", shapes.size(a, "num_embeddings"),
                                       shapes.size(a, "embedding_dim"))

    def forward(self, ids):
        """``(y, cache)``: ``y`` of shape ``ids.shape + (embedding_dim,)``."""
        W = self.params["weight"]
        xp = namespace(ids, W, names=["ids", "weight"])
        _check_ids(ids, self.num_embeddings, xp=xp)
        y, cache = embedding(W, ids, xp=xp)
        return y, cache._replace(owner=weakref.ref(self))

    def backward(self, cache, dy):
        """``(None, {"weight": dW})`` from the ``cache`` of :meth:`forward` and ``dy`` (shape of
        ``y``); like every module's backward, input gradient first (ids have none), then the
        parameter gradients.

        Raises
        ------
        TypeError
            For a cache that is not an :class:`EmbeddingCache` (e.g. None), or a ``dy`` that is
            not floating point.
        ValueError
            For a cache made by another layer, or a ``dy`` whose shape is not that of ``y``.
        """
        check_cache(self, cache, EmbeddingCache, keep=False)
        W = self.params["weight"]
        xp = namespace(dy, W, names=["dy", "weight"])
        check_float(dy, "dy", xp, W.dtype)
        expected = (*cache.shape, self.embedding_dim)
        if tuple(dy.shape) != expected:
            raise ValueError(
                f"dy must have the shape of the forward output ids.shape + (embedding_dim,) = "
                f"{expected}, got {tuple(dy.shape)}"
            )
        # integer ids have no gradient: None in the input-gradient place of the backward pattern
        return None, {"weight": embedding_backward(cache, dy, xp=xp,
                                                   padding_idx=self.padding_idx)}

    def __call__(self, ids):
        return self.forward(ids)[0]

    def extra_repr(self):
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"
