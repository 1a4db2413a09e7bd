"""``BagOfNgrams``: logistic regression on a text's set of n-grams, the baseline every recurrent
classifier has to beat, and :func:`fit_baseline`, which trains it with a validated strength of
weight decay.

With ``f_1 .. f_n`` the ids of a text's distinct known n-grams and ``W (F, C)``, ``b (C,)``::

    logits = b + s * sum_j W[f_j],     s = 1 / sqrt(n)

which is a :class:`~xprnn.nn.Linear` layer applied to the text's binary n-gram vector scaled to
unit length, computed as a gather and a sum (an "embedding bag") so the ``(N, F)`` feature matrix
is never built. Its gradient is the scatter-add of the embedding::

    db = sum_b dlogits[b],     dW[f] = sum over (b, j) with f_bj = f of s_b * dlogits[b]

Row 0 is padding: zero, and it never receives a gradient.
"""

from __future__ import annotations

import weakref

import numpy as np

from ..backend import dtype_name, from_numpy, to_numpy
from ..nn.embedding import _check_ids, embedding, embedding_backward
from ..nn.module import Module
from .base import Classifying, ModelCache, cache_parts, ids_on

__all__ = ["BagOfNgrams", "fit_baseline"]


class BagOfNgrams(Classifying, Module):
    """Linear classifier on bags of n-grams (:mod:`xprnn.text.ngrams` makes the ids).

    Parameters
    ----------
    num_features : int
        ``F``, the n-gram table's size (padding id 0 included).
    num_classes : int
    dtype, device, xp : as for :class:`xprnn.RNN`
        The weights start at zero, so there is no seed.

    Notes
    -----
    A batch for :func:`xprnn.fit` is ``(ids (B, T), lengths (B,), labels (B,))`` exactly as for
    :class:`~xprnn.models.SequenceClassifier`, with n-gram ids in place of token ids.
    """

    def __init__(self, num_features, num_classes, *, dtype=None, device=None, xp=None):
        F, C = int(num_features), int(num_classes)
        if F < 1 or C < 2:
            raise ValueError(f"num_features must be >= 1 and num_classes >= 2, got "
                             f"{num_features}, {num_classes}")
        self.meta = {}
        self._setup({"weight": np.zeros((F, C)), "bias": np.zeros(C)},
                    config={"num_features": F, "num_classes": C}, xp=xp, device=device,
                    dtype=dtype)

    @classmethod
    def param_shapes(cls, config):
        F, C = int(config["num_features"]), int(config["num_classes"])
        return {"weight": (F, C), "bias": (C,)}

    def forward(self, ids, lengths, *, keep=True):
        """``logits (B, C), cache`` for n-gram ids ``(B, T)`` (0 = padding) and ``lengths (B,)``,
        the number of ids of each row."""
        ids = ids_on(self, ids)
        xp, W = self.xp, self.params["weight"]
        if ids.ndim != 2:
            raise ValueError(f"ids must have shape (batch, time), got {tuple(ids.shape)}")
        host = isinstance(lengths, (list, tuple, np.ndarray))
        n = np.maximum(np.asarray(lengths if host else to_numpy(lengths), dtype=np.float64), 1)
        if n.shape != (ids.shape[0],):
            raise ValueError(f"lengths must have shape ({ids.shape[0]},), got {n.shape}")
        _check_ids(ids, W.shape[0], xp=xp)
        s = from_numpy((1.0 / np.sqrt(n))[:, None], xp, self.device, dtype_name(W.dtype))
        e, e_cache = embedding(W, ids, xp=xp)
        logits = xp.sum(e, axis=1) * s + self.params["bias"]
        cache = ModelCache(weakref.ref(self), tuple(logits.shape), (e_cache, s)) if keep else None
        return logits, cache

    def backward(self, cache, dlogits):
        """``{"weight": dW, "bias": db}`` given ``dlogits (B, C)``."""
        e_cache, s = cache_parts(self, cache, dlogits)
        xp = self.xp
        B, T = e_cache.shape
        de = xp.broadcast_to((dlogits * s)[:, None, :], (B, T, dlogits.shape[1]))
        return {"weight": embedding_backward(e_cache, de, xp=xp, padding_idx=0),
                "bias": xp.sum(dlogits, axis=0)}

    def extra_repr(self):
        return f"{self.config['num_features']}, {self.config['num_classes']}"


def fit_baseline(train, valid, num_features, num_classes, *, weight_decays=(1e-6, 1e-5, 1e-4),
                 epochs=10, lr=0.05, xp=None, device=None, dtype=None):
    """Train :class:`BagOfNgrams` once per weight decay and keep the best on ``valid``.

    Parameters
    ----------
    train, valid : :class:`~xprnn.text.batching.Batches` of n-gram ids
        ``valid`` picks the weight decay and, by early stopping, the epoch.
    num_features, num_classes : int
        As for :class:`BagOfNgrams`.
    weight_decays : sequence of float
        Adam's L2 penalties tried (the ``1/C`` of a logistic regression).
    epochs : int
        The most epochs per run; a run stops after 2 epochs without a better validation accuracy.
    lr : float
        Adam's learning rate (large: the features are sparse and each is seen rarely).

    Returns
    -------
    model : BagOfNgrams
        The best run's best epoch.
    record : dict
        ``weight_decay``, ``epoch``, ``valid_accuracy``, ``valid_loss`` of that run.
    """
    from ..optim import Adam
    from ..training import fit

    best = None
    for wd in weight_decays:
        model = BagOfNgrams(num_features, num_classes, xp=xp, device=device, dtype=dtype)
        history = fit(model, train, Adam(lr=lr, weight_decay=wd), epochs, valid=valid,
                      patience=2, progress=False, log=None)
        rec = history.epochs[history.best_epoch - 1]
        score = (rec["valid_accuracy"], -rec["valid_loss"])
        if best is None or score > best[0]:
            best = score, model, {"weight_decay": wd, "epoch": history.best_epoch,
                                  "valid_accuracy": rec["valid_accuracy"],
                                  "valid_loss": rec["valid_loss"]}
    return best[1], best[2]
