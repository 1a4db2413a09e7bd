"""``LanguageModel``: embeddings, a recurrent layer and a linear decoder at every step; trained
by truncated BPTT over consecutive chunks, sampled token by token."""

from __future__ import annotations

import math
import weakref

import numpy as np

from ..backend import to_numpy
from ..nn import Linear, dropout, dropout_backward, linear, linear_backward, softmax_cross_entropy
from ..nn import shapes as _shapes
from ..nn.sampled_softmax import draw, log_uniform_log_count, sampled_softmax_cross_entropy
from .base import ModelCache, RNNModel, ids_on
from .sampling import sample_next

__all__ = ["LanguageModel"]


class LanguageModel(RNNModel):
    """Next-token model: embeddings, a recurrent layer, and a linear decoder at every step.

    Parameters
    ----------
    vocab_size, embedding_dim, hidden_size : int
    cell, num_layers, dropout : as for :class:`SequenceClassifier`
    tie_weights : bool
        Decode with the embedding matrix (needs ``embedding_dim == hidden_size``); then the
        state dict holds ``embedding.weight`` and ``fc.bias`` only.
    recurrent_dropout, zoneout : as for :class:`xprnn.nn.layer.Recurrent` (keywords).
    dtype, device, xp, seed : as for :class:`xprnn.RNN`.

    Attributes
    ----------
    softmax_samples : int or None
        Train with a sampled softmax over this many candidate words per step
        (:mod:`xprnn.nn.sampled_softmax`), ``None`` (default) for the full softmax; evaluation
        and generation always use the full softmax. Not part of the architecture: set it on a
        built or loaded model.

    Notes
    -----
    A batch for :func:`xprnn.fit` is ``(inputs (B, T), targets (B, T))``; batches are taken in
    order and the state carries from one to the next (truncated BPTT).
    """

    selection = ("loss", "min")
    softmax_samples = None

    def __init__(self, vocab_size, embedding_dim, hidden_size, cell="lstm", num_layers=1,
                 dropout=0.0, tie_weights=False, **kw):
        if tie_weights and embedding_dim != hidden_size:
            raise ValueError(
                f"tie_weights needs embedding_dim == hidden_size, got {embedding_dim} and "
                f"{hidden_size}"
            )
        config = dict(vocab_size=vocab_size, embedding_dim=embedding_dim,
                      hidden_size=hidden_size, cell=cell, num_layers=num_layers,
                      dropout=dropout, tie_weights=tie_weights)
        fc_seed = self._build(config, vocab_size, embedding_dim, hidden_size, cell, num_layers,
                              False, dropout, None, kw)
        self.tie_weights = bool(tie_weights)
        self.fc = Linear(hidden_size, vocab_size, seed=fc_seed, **kw)
        if self.tie_weights:
            del self.fc.params["weight"]
        self.children["fc"] = self.fc

    @classmethod
    def param_shapes(cls, config):
        """``{name: shape}`` of the parameters ``cls(**config)`` has, without building it (the
        checkpoint loader compares them with a file's header); ``ValueError`` for a missing or
        out-of-range size."""
        a = _shapes.arguments(cls.__init__, config)
        V, E, H = (_shapes.size(a, k) for k in ("vocab_size", "embedding_dim", "hidden_size"))
        shapes = _shapes.embedding_shapes("embedding.", V, E)
        shapes.update(_shapes.recurrent_shapes(
            "rnn.", a["cell"], E, H, _shapes.size(a, "num_layers", _shapes.MAX_LAYERS)))
        shapes.update(_shapes.linear_shapes("fc.", H, V))
        if _shapes.flag(a, "tie_weights"):
            del shapes["fc.weight"]
        return shapes

    def _decoder_weight(self):
        return self.embedding.params["weight"] if self.tie_weights else self.fc.params["weight"]

    def _features(self, ids, state, keep):
        """The decoder's input ``out (B, T, H)``, the new state and what backward needs."""
        ids = ids_on(self, ids)
        xp = self.xp
        if ids.ndim != 2:
            raise ValueError(f"ids must have shape (batch, time), got {tuple(ids.shape)}")
        e, e_cache = self._embed(ids, xp)
        out, state, r_cache = self.rnn.forward(e, state, keep=keep)
        out, o_mask = dropout(out, self.p_drop, self.rng, xp=xp, training=self.training)
        return out, state, (e_cache, r_cache, o_mask, out)

    def _features_backward(self, parts, d_out, dW, db):
        """Every parameter's gradient from the decoder's: ``d_out``, ``dW``, ``db``."""
        e_cache, r_cache, o_mask, _ = parts
        grads = {"fc.bias": db}
        d_out = dropout_backward(d_out, o_mask)
        de, _, g = self.rnn.backward(r_cache, d_out)
        grads.update({f"rnn.{k}": v for k, v in g.items()})
        self._embed_backward(e_cache, de, grads)
        if self.tie_weights:
            grads["embedding.weight"] = grads["embedding.weight"] + dW
        else:
            grads["fc.weight"] = dW
        return {k: grads[k] for k in self.state_dict()}

    def forward(self, ids, state=None, *, keep=True):
        """``logits (B, T, V), state, cache`` for ids ``(B, T)``; ``state`` carries over chunks;
        ``keep=False`` (evaluation, generation) keeps no cache for backward."""
        out, state, parts = self._features(ids, state, keep)
        logits = linear(out, self._decoder_weight(), self.fc.params["bias"], xp=self.xp)
        cache = ModelCache(weakref.ref(self), tuple(logits.shape), parts) if keep else None
        return logits, state, cache

    def backward(self, cache, dlogits):
        """Gradients of every parameter given ``dlogits (B, T, V)``; a clear error for a cache
        from another model or ``keep=False``, or a wrong shape."""
        parts = self._parts(cache, dlogits)
        d_out, dW, db = linear_backward(dlogits, parts[3], self._decoder_weight(), True,
                                        xp=self.xp)
        return self._features_backward(parts, d_out, dW, db)

    def loss(self, inputs, targets, state=None):
        """``(loss, grads, state)`` for one chunk; feed ``state`` to the next chunk (truncated
        BPTT: gradients stop at the chunk boundary). With ``softmax_samples`` set, the loss
        and gradients are the sampled softmax's (:mod:`xprnn.nn.sampled_softmax`)."""
        if self.softmax_samples:
            return self._sampled_loss(inputs, targets, state, self.softmax_samples)
        logits, state, cache = self.forward(inputs, state)
        loss, dlogits = softmax_cross_entropy(logits, ids_on(self, targets, "targets"))
        return loss, self.backward(cache, dlogits), state

    def _sampled_loss(self, inputs, targets, state, num_sampled):
        xp = self.xp
        out, state, parts = self._features(inputs, state, True)
        B, T, H = out.shape
        V = self.config["vocab_size"]
        if not 1 <= num_sampled < V:
            raise ValueError(f"softmax_samples must lie in [1, {V}) for {V} words, got "
                             f"{num_sampled}")
        t = xp.reshape(ids_on(self, targets, "targets"), (B * T,))
        # the candidates come from the model's own generator (the dropout masks' one, on its
        # host stream), so a training state saves their position too
        sampled, log_count_s = draw(V, num_sampled, self.rng, out.dtype, xp=xp,
                                    device=self.device)
        loss, dh, dW, db = sampled_softmax_cross_entropy(
            xp.reshape(out, (B * T, H)), self._decoder_weight(), self.fc.params["bias"], t,
            sampled, log_uniform_log_count(t, V, num_sampled, out.dtype, xp=xp), log_count_s)
        return loss, self._features_backward(parts, xp.reshape(dh, (B, T, H)), dW, db), state

    def generate(self, prompt_ids, max_new_tokens, temperature=1.0, top_k=None, greedy=False,
                 seed=None):
        """Continue ``prompt_ids`` by ``max_new_tokens`` tokens; returns the new ids (list).

        ``greedy=True`` takes the argmax at each step (the blog's "next word"); otherwise it
        samples from ``softmax(logits / temperature)``, restricted to the ``top_k`` most likely
        tokens when given. Sampling draws from a NumPy generator seeded with ``seed``; each
        step's logits come to the host once (one row of ``V`` numbers). :meth:`stream` gives
        the same ids one at a time, as they are drawn.
        """
        return list(self.stream(prompt_ids, max_new_tokens, temperature, top_k, greedy, seed))

    def stream(self, prompt_ids, max_new_tokens, temperature=1.0, top_k=None, greedy=False,
               seed=None):
        """:meth:`generate` as an iterator: each new id (int) as soon as it is drawn, so a
        caller can print a long text as it grows. The arguments are checked at the call; the
        model is in evaluation mode until the iterator is exhausted or closed."""
        prompt = [int(i) for i in prompt_ids]
        if not prompt:
            raise ValueError("prompt_ids must hold at least one token id")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if top_k is not None and not 1 <= top_k <= self.config["vocab_size"]:
            raise ValueError(f"top_k must be in [1, vocab_size], got {top_k}")
        return self._stream(prompt, int(max_new_tokens), temperature, top_k, greedy,
                            np.random.default_rng(seed))

    def _stream(self, prompt, n, temperature, top_k, greedy, rng):
        mode = self.training
        self.eval()
        try:
            logits, state, _ = self.forward([prompt], keep=False)
            for k in range(n):
                token = sample_next(to_numpy(logits[0, -1, :]), rng, temperature, top_k, greedy)
                yield token
                if k + 1 < n:
                    logits, state, _ = self.forward([[token]], state, keep=False)
        finally:
            self.train(mode)

    # -- the training protocol (see xprnn.models.base) ----------------------------------------
    def train_batch(self, batch, carry=None):
        return self.loss(batch[0], batch[1], carry)

    def eval_batch(self, batch, carry=None):
        logits, carry, _ = self.forward(batch[0], carry, keep=False)
        loss, _ = softmax_cross_entropy(logits, ids_on(self, batch[1], "targets"))
        k = math.prod(batch[1].shape)
        return {"loss": float(loss) * k}, k, carry

    def metrics(self, sums, count):
        loss = sums.get("loss", 0.0) / max(count, 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)),
                "bits_per_token": loss / math.log(2)}

    def batch_tokens(self, batch):
        return math.prod(batch[0].shape)
