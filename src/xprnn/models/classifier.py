"""``SequenceClassifier``: embed tokens, run a recurrent layer over each row's valid steps, pool,
and a linear head gives class logits."""

from __future__ import annotations

import re
import weakref

import numpy as np

from ..backend import from_numpy, to_numpy
from ..nn import Linear, dropout, dropout_backward
from ..nn import shapes as _shapes
from ..nn.pooling import POOLINGS, length_mask, pool, pool_backward
from .base import Classifying, ModelCache, RNNModel, ids_on

__all__ = ["SequenceClassifier"]


class SequenceClassifier(Classifying, RNNModel):
    """Text classifier: embeddings, a recurrent layer, pooling over time, a linear head.

    Parameters
    ----------
    vocab_size, embedding_dim, hidden_size, num_classes : int
    cell : {"lstm", "gru", "rnn", "rnn_relu"} or any registered cell
    num_layers : int
    bidirectional : bool
    dropout : float
        On the embeddings, between stacked layers and on the pooled features (training only).
    pooling : {"last", "mean", "max"}
        The state after each row's last valid step (both directions' final states when
        bidirectional), or the mean / max of the outputs over valid steps only, so padding never
        leaks into the result.
    padding_idx : int or None
        The padding token id (0 in :class:`xprnn.text.Vocabulary`).
    recurrent_dropout, zoneout : as for :class:`xprnn.nn.layer.Recurrent` (keywords).
    dtype, device, xp, seed : as for :class:`xprnn.RNN`.

    Notes
    -----
    A batch for :func:`xprnn.fit` is ``(ids (B, T), lengths (B,), labels (B,))``.
    """

    def __init__(self, vocab_size, embedding_dim, hidden_size, num_classes, cell="lstm",
                 num_layers=1, bidirectional=False, dropout=0.0, pooling="last", padding_idx=0,
                 **kw):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        config = dict(vocab_size=vocab_size, embedding_dim=embedding_dim,
                      hidden_size=hidden_size, num_classes=num_classes, cell=cell,
                      num_layers=num_layers, bidirectional=bidirectional, dropout=dropout,
                      pooling=pooling, padding_idx=padding_idx)
        fc_seed = self._build(config, vocab_size, embedding_dim, hidden_size, cell, num_layers,
                              bidirectional, dropout, padding_idx, kw)
        self.pooling = pooling
        D = 2 if bidirectional else 1
        self.fc = Linear(D * hidden_size, num_classes, seed=fc_seed, **kw)
        self.children["fc"] = self.fc

    @classmethod
    def param_shapes(cls, config):
        """``{name: shape}`` of the parameters ``cls(**config)`` has, without building it (the
        checkpoint loader compares them with a file's header); ``ValueError`` for a missing or
        out-of-range size."""
        a = _shapes.arguments(cls.__init__, config)
        V, E, H, C = (_shapes.size(a, k) for k in ("vocab_size", "embedding_dim", "hidden_size",
                                                   "num_classes"))
        bidirectional = _shapes.flag(a, "bidirectional")
        shapes = _shapes.embedding_shapes("embedding.", V, E)
        shapes.update(_shapes.recurrent_shapes(
            "rnn.", a["cell"], E, H, _shapes.size(a, "num_layers", _shapes.MAX_LAYERS),
            bidirectional=bidirectional))
        shapes.update(_shapes.linear_shapes("fc.", (1 + bidirectional) * H, C))
        return shapes

    def forward(self, ids, lengths, *, keep=True):
        """``logits (B, num_classes), cache`` for token ids ``(B, T)`` and ``lengths (B,)``;
        ``keep=False`` (evaluation) keeps no cache for backward."""
        ids = ids_on(self, ids)
        xp = self.xp
        if ids.ndim != 2:
            raise ValueError(f"ids must have shape (batch, time), got {tuple(ids.shape)}")
        e, e_cache = self._embed(ids, xp)
        out, h_n, r_cache = self.rnn.forward(e, lengths=lengths, keep=keep)  # checks lengths
        mask = None
        if lengths is not None and self.pooling != "last":
            n = from_numpy(np.asarray(to_numpy(lengths), dtype=np.int64), xp, self.device)
            mask = length_mask(n, ids.shape[1], xp=xp)
        h = h_n[0] if isinstance(h_n, tuple) else h_n
        pooled, p_cache = pool(self.pooling, out, h, mask, self.rnn.num_directions, xp=xp)
        pooled, f_mask = dropout(pooled, self.p_drop, self.rng, xp=xp, training=self.training)
        logits, fc_cache = self.fc.forward(pooled)
        cache = ModelCache(weakref.ref(self), tuple(logits.shape),
                           (e_cache, r_cache, p_cache, f_mask, fc_cache)) if keep else None
        return logits, cache

    def backward(self, cache, dlogits):
        """Gradients of every parameter (keys of :meth:`state_dict`) given ``dlogits (B, C)``;
        a clear error for a cache from another model or ``keep=False``, or a wrong shape."""
        e_cache, r_cache, p_cache, f_mask, fc_cache = self._parts(cache, dlogits)
        xp = self.xp
        dpooled, g = self.fc.backward(fc_cache, dlogits)
        grads = {f"fc.{k}": v for k, v in g.items()}
        dpooled = dropout_backward(dpooled, f_mask)
        d_out, dh = pool_backward(self.pooling, dpooled, p_cache, self.rnn.num_layers,
                                  self.rnn.num_directions, xp=xp)
        d_h_n = None if dh is None else (dh,) + (None,) * (self.rnn.cell.num_states - 1)
        de, _, g = self.rnn.backward(r_cache, d_out, d_h_n)
        grads.update({f"rnn.{k}": v for k, v in g.items()})
        self._embed_backward(e_cache, de, grads)
        return {k: grads[k] for k in self.state_dict()}

    def layer_groups(self):
        """Parameter names by layer, the output layer first, then the recurrent layers from the
        top down, the embedding last: the groups of :func:`xprnn.optim.layerwise`."""
        names = list(self.state_dict())
        rnn = [[n for n in names if n.startswith("rnn.") and re.search(rf"_l{i}(_|$)", n)]
               for i in reversed(range(self.rnn.num_layers))]
        return [[n for n in names if n.startswith("fc.")], *rnn,
                [n for n in names if n.startswith("embedding.")]]
