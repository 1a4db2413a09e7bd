"""Ready models: a sequence classifier (sentiment) and a language model (next token).

Each is ``Embedding -> RNN/LSTM/GRU -> Linear`` with dropout, a ``forward``/``backward`` pair and a
``loss`` that does both and returns the gradients keyed like ``state_dict()``
(``embedding.weight``, ``rnn.weight_ih_l0``, ..., ``fc.weight``, ``fc.bias``).
"""

from __future__ import annotations

import numpy as np

from ._backend import from_numpy, namespace, to_numpy
from ._module import Module
from ._random import Generator
from .checkpoint import save as _save_checkpoint
from .dropout import _check_p, dropout, dropout_backward
from .embedding import Embedding
from .linear import Linear, linear, linear_backward
from .losses import softmax, softmax_cross_entropy
from .recurrent import length_mask
from .rnn import GRU, LSTM, RNN

__all__ = ["SequenceClassifier", "LanguageModel", "MODELS"]

_CELLS = {"lstm": LSTM, "gru": GRU, "rnn": RNN, "rnn_relu": RNN}
POOLINGS = ("last", "mean", "max")


def _make_rnn(cell, *args, **kw):
    if cell not in _CELLS:
        raise ValueError(f"cell must be one of {sorted(_CELLS)}, got {cell!r}")
    if cell == "rnn_relu":
        kw["nonlinearity"] = "relu"
    return _CELLS[cell](*args, **kw)


def _ids(ids, like, name="ids"):
    """Accept NumPy/list token ids and move them to the model's backend."""
    if isinstance(ids, (list, tuple, np.ndarray)):
        ids = from_numpy(np.asarray(ids, dtype=np.int64), like.xp, like.device)
        ids = like.xp.astype(ids, like.xp.int64)
    namespace(ids, like.embedding.params["weight"], names=[name, "model parameters"])
    return ids


class _RNNModel(Module):
    """Shared constructor pieces: embedding, recurrent layer, dropout stream, config."""

    def _build(self, config, vocab_size, embedding_dim, hidden_size, cell, num_layers,
               bidirectional, dropout, padding_idx, kw):
        self.config = config
        self.meta = {}  # JSON-able extras saved with the weights (vocabulary, classes, ...)
        self.p_drop = _check_p(dropout)
        seed = kw.pop("seed", None)
        seeds = np.random.SeedSequence(seed).generate_state(4)
        self._setup({}, **kw)
        self.embedding = Embedding(vocab_size, embedding_dim, padding_idx, seed=int(seeds[0]),
                                   **kw)
        self.rnn = _make_rnn(cell, embedding_dim, hidden_size, num_layers, batch_first=True,
                             dropout=dropout, bidirectional=bidirectional, seed=int(seeds[1]),
                             **kw)
        self._rng = Generator(int(seeds[2]))
        self.children = {"embedding": self.embedding, "rnn": self.rnn}
        return int(seeds[3])

    def _embed(self, ids, xp):
        e, e_cache = self.embedding.forward(ids)
        e, e_mask = dropout(e, self.p_drop, self._rng, xp=xp, training=self.training)
        return e, (e_cache, e_mask)

    def _embed_backward(self, cache, de, grads):
        e_cache, e_mask = cache
        g = self.embedding.backward(e_cache, dropout_backward(de, e_mask))
        grads["embedding.weight"] = g["weight"]

    def _rnn_grads(self, grads, g):
        grads.update({f"rnn.{k}": v for k, v in g.items()})

    def save(self, path):
        """Write a checkpoint directory; see :func:`xprnn.checkpoint.save`."""
        return _save_checkpoint(self, path)

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())


class SequenceClassifier(_RNNModel):
    """Text classifier: embed tokens, run the recurrent layer over each row's valid steps, pool,
    then a linear head gives class logits.

    Parameters
    ----------
    vocab_size, embedding_dim, hidden_size, num_classes : int
    cell : {"lstm", "gru", "rnn", "rnn_relu"}
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
    dtype, device, xp, seed : as for :class:`xprnn.RNN`.
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

    def forward(self, ids, lengths, *, keep=True):
        """``logits (B, num_classes), cache`` for token ids ``(B, T)`` and ``lengths (B,)``;
        ``keep=False`` (evaluation) keeps no cache for backward."""
        ids = _ids(ids, self)
        xp = self.xp
        if ids.ndim != 2:
            raise ValueError(f"ids must have shape (batch, time), got {tuple(ids.shape)}")
        e, e_cache = self._embed(ids, xp)
        out, h_n, r_cache = self.rnn.forward(e, lengths=lengths, keep=keep)  # checks lengths
        mask = None
        if lengths is not None:
            n = from_numpy(np.asarray(to_numpy(lengths), dtype=np.int64), xp, self.device)
            mask = length_mask(xp.astype(n, xp.int64), ids.shape[1], xp=xp)
        pooled, p_cache = self._pool(out, h_n, mask, xp)
        pooled, f_mask = dropout(pooled, self.p_drop, self._rng, xp=xp, training=self.training)
        logits, fc_cache = self.fc.forward(pooled)
        return logits, (e_cache, r_cache, p_cache, f_mask, fc_cache, tuple(out.shape))

    def _pool(self, out, h_n, mask, xp):
        # out: (B, T, D*H); mask: (T, B, 1) bool or None
        B, T, F = out.shape
        if self.pooling == "last":
            h = h_n[0] if isinstance(h_n, tuple) else h_n  # (L*D, B, H)
            if self.rnn.bidirectional:
                return xp.concat([h[-2, ...], h[-1, ...]], axis=-1), None
            return h[-1, ...], None
        m = (xp.ones((B, T, 1), dtype=xp.bool, device=self.device) if mask is None
             else xp.permute_dims(mask, (1, 0, 2)))
        if self.pooling == "mean":
            n = xp.sum(xp.astype(m, out.dtype), axis=1)  # (B, 1) valid steps per row
            return xp.sum(out, axis=1) / n, (m, n)
        masked = xp.where(m, out, -xp.inf)
        best = xp.max(masked, axis=1)
        return best, (m, masked == best[:, None, :])

    def _pool_backward(self, dpooled, p_cache, shape, xp):
        B, T, F = shape
        H = self.rnn.hidden_size
        if self.pooling == "last":
            L, D = self.rnn.num_layers, self.rnn.num_directions
            parts = [dpooled[:, d * H:(d + 1) * H] for d in range(D)]
            zeros = xp.zeros((B, H), dtype=dpooled.dtype, device=self.device)
            dh = xp.stack([zeros] * (L * D - D) + parts)
            return None, (dh, None) if isinstance(self.rnn, LSTM) else dh
        m, aux = p_cache
        if self.pooling == "mean":
            d_out = xp.where(m, (dpooled / aux)[:, None, :], 0.0)
        else:  # max: the gradient goes to the step that won (ties share it)
            d_out = xp.where(aux, dpooled[:, None, :], 0.0)
        return d_out, None

    def backward(self, cache, dlogits):
        """Gradients of every parameter (keys of :meth:`state_dict`) given ``dlogits (B, C)``."""
        e_cache, r_cache, p_cache, f_mask, fc_cache, shape = cache
        xp = self.xp
        grads = {}
        dpooled, g = self.fc.backward(fc_cache, dlogits)
        grads.update({f"fc.{k}": v for k, v in g.items()})
        dpooled = dropout_backward(dpooled, f_mask)
        d_out, d_h_n = self._pool_backward(dpooled, p_cache, shape, xp)
        de, _, g = self.rnn.backward(r_cache, d_out, d_h_n)
        self._rnn_grads(grads, g)
        self._embed_backward(e_cache, de, grads)
        return {k: grads[k] for k in self.state_dict()}

    def loss(self, ids, lengths, labels):
        """``(loss, grads, logits)``: mean cross-entropy of integer ``labels (B,)``."""
        logits, cache = self.forward(ids, lengths)
        loss, dlogits = softmax_cross_entropy(logits, _ids(labels, self, "labels"))
        return loss, self.backward(cache, dlogits), logits

    def predict_proba(self, ids, lengths):
        """Class probabilities ``(B, num_classes)`` in evaluation mode."""
        mode = self.training
        self.eval()
        try:
            return softmax(self.forward(ids, lengths, keep=False)[0])
        finally:
            self.train(mode)


class LanguageModel(_RNNModel):
    """Next-token model: embeddings, a recurrent layer, and a linear decoder at every step.

    Parameters
    ----------
    vocab_size, embedding_dim, hidden_size : int
    cell, num_layers, dropout : as for :class:`SequenceClassifier`
    tie_weights : bool
        Decode with the embedding matrix (needs ``embedding_dim == hidden_size``); then the
        state dict holds ``embedding.weight`` and ``fc.bias`` only.
    dtype, device, xp, seed : as for :class:`xprnn.RNN`.
    """

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

    def _decoder_weight(self):
        return self.embedding.params["weight"] if self.tie_weights else self.fc.params["weight"]

    def forward(self, ids, state=None, *, keep=True):
        """``logits (B, T, V), state, cache`` for ids ``(B, T)``; ``state`` carries over chunks;
        ``keep=False`` (evaluation, generation) keeps no cache for backward."""
        ids = _ids(ids, self)
        xp = self.xp
        if ids.ndim != 2:
            raise ValueError(f"ids must have shape (batch, time), got {tuple(ids.shape)}")
        e, e_cache = self._embed(ids, xp)
        out, state, r_cache = self.rnn.forward(e, state, keep=keep)
        out, o_mask = dropout(out, self.p_drop, self._rng, xp=xp, training=self.training)
        logits = linear(out, self._decoder_weight(), self.fc.params["bias"], xp=xp)
        return logits, state, (e_cache, r_cache, o_mask, out)

    def backward(self, cache, dlogits):
        """Gradients of every parameter given ``dlogits (B, T, V)``."""
        e_cache, r_cache, o_mask, out = cache
        xp = self.xp
        d_out, dW, db = linear_backward(dlogits, out, self._decoder_weight(), True, xp=xp)
        grads = {"fc.bias": db}
        d_out = dropout_backward(d_out, o_mask)
        de, _, g = self.rnn.backward(r_cache, d_out)
        self._rnn_grads(grads, g)
        self._embed_backward(e_cache, de, grads)
        if self.tie_weights:
            grads["embedding.weight"] = grads["embedding.weight"] + dW
        else:
            grads["fc.weight"] = dW
        return {k: grads[k] for k in self.state_dict()}

    def loss(self, inputs, targets, state=None):
        """``(loss, grads, state)`` for one chunk; feed ``state`` to the next chunk (truncated
        BPTT: gradients stop at the chunk boundary)."""
        logits, state, cache = self.forward(inputs, state)
        loss, dlogits = softmax_cross_entropy(logits, _ids(targets, self, "targets"))
        return loss, self.backward(cache, dlogits), state

    def generate(self, prompt_ids, max_new_tokens, temperature=1.0, top_k=None, greedy=False,
                 seed=None):
        """Continue ``prompt_ids`` by ``max_new_tokens`` tokens; returns the new ids (list).

        ``greedy=True`` takes the argmax at each step (the blog's "next word"); otherwise it
        samples from ``softmax(logits / temperature)``, restricted to the ``top_k`` most likely
        tokens when given. Sampling draws from a NumPy generator seeded with ``seed``.
        """
        prompt = [int(i) for i in prompt_ids]
        if not prompt:
            raise ValueError("prompt_ids must hold at least one token id")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if top_k is not None and not 1 <= top_k <= self.config["vocab_size"]:
            raise ValueError(f"top_k must be in [1, vocab_size], got {top_k}")
        rng = np.random.default_rng(seed)
        mode = self.training
        self.eval()
        try:
            logits, state, _ = self.forward([prompt], keep=False)
            new = []
            for _ in range(int(max_new_tokens)):
                z = to_numpy(logits[0, -1, :]).astype(np.float64)
                if greedy:
                    nxt = int(np.argmax(z))
                else:
                    z = z / temperature
                    if top_k is not None:
                        z[z < np.sort(z)[-top_k]] = -np.inf
                    p = np.exp(z - z.max())
                    nxt = int(rng.choice(len(p), p=p / p.sum()))
                new.append(nxt)
                logits, state, _ = self.forward([[nxt]], state, keep=False)
            return new
        finally:
            self.train(mode)


MODELS = {"SequenceClassifier": SequenceClassifier, "LanguageModel": LanguageModel}
