"""What the ready models share: ``Embedding -> Recurrent -> head`` construction, token ids moved
to the model's device, and the training protocol that :func:`xprnn.fit` relies on.

The protocol (every model implements it, so the training step needs no ``isinstance``):

- ``train_batch(batch, carry) -> (loss, grads, carry)``: loss (0-d array) and gradients keyed
  like ``state_dict()`` for one batch; ``carry`` is what flows from batch to batch (the recurrent
  state of a language model, ``None`` for a classifier);
- ``eval_batch(batch, carry) -> (sums, count, carry)``: metric sums (floats) over ``count`` items;
- ``metrics(sums, count) -> dict``: the final metrics (``loss`` and the model's own);
- ``batch_tokens(batch) -> int``: tokens in a batch (for tokens/s);
- ``selection``: ``(metric, "max" or "min")``, the validation metric that picks the best epoch.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import numpy as np

from ..backend import Generator, from_numpy, namespace, to_numpy
from ..checkpoint import save as _save_checkpoint
from ..nn import Embedding, Recurrent, dropout, dropout_backward, softmax, softmax_cross_entropy
from ..nn.dropout import check_p
from ..nn.module import Module

__all__ = ["ids_on", "cache_parts", "RNNModel", "ModelCache", "Classifying"]


class ModelCache(NamedTuple):
    """What a model's ``backward`` needs from its ``forward`` (``parts``: the caches of its
    layers), and what it checks: the model that made it and the shape of the logits."""

    owner: weakref.ref  # to the model whose forward made the cache
    logits_shape: tuple
    parts: tuple


def ids_on(model, ids, name="ids"):
    """Token ids on ``model``'s backend and device: NumPy/list ids are moved there once,
    backend arrays are checked to be on the same backend and device."""
    if isinstance(ids, (list, tuple, np.ndarray)):
        ids = from_numpy(np.asarray(ids, dtype=np.int64), model.xp, model.device)
    namespace(ids, next(iter(model.state_dict().values())), names=[name, "model parameters"])
    return ids


def cache_parts(model, cache, dlogits):
    """The layers' caches in ``cache``, once it is checked to be ``model``'s and ``dlogits`` to
    have the shape of its logits (shapes only: no data is read)."""
    if not isinstance(cache, ModelCache):
        got = "None (forward(..., keep=False) keeps no cache)" if cache is None \
            else type(cache).__name__
        raise TypeError(f"cache must be the one returned by this model's forward "
                        f"(keep=True), got {got}")
    owner = cache.owner()
    if owner is not model:
        raise ValueError(f"cache was made by another model ({owner!r:.120}), not by this "
                         "one; pass the cache of this model's forward")
    if tuple(getattr(dlogits, "shape", ())) != cache.logits_shape:
        raise ValueError(f"dlogits has shape {tuple(getattr(dlogits, 'shape', ()))}, "
                         f"expected {cache.logits_shape} (the shape of the logits)")
    return cache.parts


class Classifying:
    """The training protocol of a classifier whose ``forward(ids, lengths, keep=)`` gives class
    logits ``(B, C)`` and whose ``backward(cache, dlogits)`` gives the gradients: batches are
    ``(ids (B, T), lengths (B,), labels (B,))``, the best epoch has the highest accuracy."""

    selection = ("accuracy", "max")

    def loss(self, ids, lengths, labels):
        """``(loss, grads, logits)``: mean cross-entropy of integer ``labels (B,)``."""
        logits, cache = self.forward(ids, lengths)
        loss, dlogits = softmax_cross_entropy(logits, ids_on(self, labels, "labels"))
        return loss, self.backward(cache, dlogits), logits

    def predict_logits(self, ids, lengths):
        """Class logits ``(B, num_classes)`` in evaluation mode (no dropout, no cache)."""
        mode = self.training
        self.eval()
        try:
            return self.forward(ids, lengths, keep=False)[0]
        finally:
            self.train(mode)

    def predict_proba(self, ids, lengths):
        """Class probabilities ``(B, num_classes)`` in evaluation mode."""
        return softmax(self.predict_logits(ids, lengths))

    def train_batch(self, batch, carry=None):
        loss, grads, _ = self.loss(*batch)
        return loss, grads, None

    def eval_batch(self, batch, carry=None):
        ids, lengths, labels = batch
        logits, _ = self.forward(ids, lengths, keep=False)
        labels = ids_on(self, labels, "labels")
        loss, _ = softmax_cross_entropy(logits, labels)
        xp = self.xp
        correct = xp.sum(xp.astype(xp.argmax(logits, axis=-1) == labels, xp.int64))
        k = int(labels.shape[0])
        return {"loss": float(loss) * k, "correct": int(correct)}, k, None

    def metrics(self, sums, count):
        n = max(count, 1)
        return {"loss": sums.get("loss", 0.0) / n, "accuracy": sums.get("correct", 0) / n}

    def batch_tokens(self, batch):
        return int(np.sum(to_numpy(batch[1])))


class RNNModel(Module):
    """Base of the ready models: embedding, recurrent layer, dropout stream, config, save."""

    selection = ("loss", "min")

    def _build(self, config, vocab_size, embedding_dim, hidden_size, cell, num_layers,
               bidirectional, dropout, padding_idx, kw):
        self.meta = {}  # JSON-able extras saved with the weights (vocabulary, classes, ...)
        self.p_drop = check_p(dropout)
        seed = kw.pop("seed", None)
        # noise on the recurrence, recorded in the config only when used (older configs load)
        noise = {k: kw.pop(k, 0.0) for k in ("recurrent_dropout", "zoneout")}
        noise = {k: list(v) if isinstance(v, (tuple, list)) else v for k, v in noise.items()
                 if (any(v) if isinstance(v, (tuple, list)) else v)}
        config.update(noise)
        seeds = np.random.SeedSequence(seed).generate_state(4)
        self._setup({}, config=config, **kw)
        self.embedding = Embedding(vocab_size, embedding_dim, padding_idx, seed=int(seeds[0]),
                                   **kw)
        self.rnn = Recurrent(cell, embedding_dim, hidden_size, num_layers, batch_first=True,
                             dropout=dropout, bidirectional=bidirectional, seed=int(seeds[1]),
                             **noise, **kw)
        self.rng = Generator(int(seeds[2]))
        self.children = {"embedding": self.embedding, "rnn": self.rnn}
        return int(seeds[3])

    def _embed(self, ids, xp):
        e, e_cache = self.embedding.forward(ids)
        e, e_mask = dropout(e, self.p_drop, self.rng, xp=xp, training=self.training)
        return e, (e_cache, e_mask)

    def _embed_backward(self, cache, de, grads):
        e_cache, e_mask = cache
        _, g = self.embedding.backward(e_cache, dropout_backward(de, e_mask))
        grads["embedding.weight"] = g["weight"]

    def _parts(self, cache, dlogits):
        return cache_parts(self, cache, dlogits)

    def save(self, path):
        """Write a checkpoint directory; see :func:`xprnn.checkpoint.save`."""
        return _save_checkpoint(self, path)

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())
