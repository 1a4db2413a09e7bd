r"""Sampled softmax (Jean et al. 2015): a word-level language model's cross-entropy over a few
hundred classes instead of the whole vocabulary, for training; evaluation keeps the full
softmax.

A full softmax costs a ``(N, V)`` block of logits per step, most of a word-level model's time.
Here each training step draws ``S`` candidate classes from a proposal ``Q``, shared by the ``N``
tokens of the batch, and each token is scored against its own target and those ``S`` only::

    z_t = h . w_t + b_t - log(S Q(t))              (the target)
    z_j = h . w_j + b_j - log(S Q(j)),  j in S      (minus infinity where j == t)
    loss = mean over tokens of logsumexp(z_t, z_1 .. z_S) - z_t

``- log(S Q(c))`` (the log of the expected number of draws of ``c``) corrects for the proposal,
so the gradient estimates the full softmax's; a sampled class equal to the token's target
("accidental hit") is left out of that token's candidates. With every class drawn once and no
correction, it is exactly the full softmax cross-entropy (the tests check it).

The proposal is log-uniform (Zipfian) over the ids, ``Q(k) = log((k + 2) / (k + 1)) / log(V +
1)``, which suits :class:`~xprnn.text.Vocabulary` ids: sorted by frequency, most frequent first.
The draws are made on the host with NumPy and the ``S`` ids copied to the device once per step.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import check_float, device_of, from_numpy, namespace
from ..backend.scatter import index_add

__all__ = ["log_uniform_sample", "log_uniform_log_count", "draw",
           "sampled_softmax_cross_entropy"]


def log_uniform_sample(u, num_classes):
    """Class ids from uniform draws ``u`` in ``[0, 1)`` (NumPy, any shape) under the
    log-uniform proposal over ``[0, num_classes)``, by inverting its CDF ``log(k + 1) / log(V +
    1)``: NumPy ``int64``."""
    k = np.floor(np.exp(np.asarray(u, dtype=np.float64) * math.log(num_classes + 1)))
    return np.clip(k.astype(np.int64) - 1, 0, num_classes - 1)


def log_uniform_log_count(ids, num_classes, num_sampled, dtype, *, xp):
    """``log(S Q(k))`` for integer ``ids``, in ``dtype``: the log of the expected number of
    draws of each id among ``num_sampled`` (``log1p`` keeps ``Q`` accurate for large ids, where
    ``log(k + 2) - log(k + 1)`` would lose its digits in float32)."""
    k = xp.astype(ids, dtype)
    return (xp.log(xp.log1p(1.0 / (k + 1.0)))
            + (math.log(num_sampled) - math.log(math.log(num_classes + 1))))


def sampled_softmax_cross_entropy(h, weight, bias, targets, sampled, log_count_targets,
                                  log_count_sampled):
    """Sampled-softmax cross-entropy of the decoder ``h @ weight.T + bias``, and its gradients.

    Parameters
    ----------
    h : array (N, H)
        The features of N tokens.
    weight : array (V, H)
    bias : array (V,) or None
    targets : integer array (N,)
    sampled : integer array (S,)
        Candidate classes, shared by all tokens (repeats allowed).
    log_count_targets, log_count_sampled : arrays (N,) and (S,)
        ``log(S Q(c))`` of each target and each sampled class (subtracted from their logits);
        zeros for no correction.

    Returns
    -------
    loss : 0-d array
        The mean over the N tokens.
    dh : array (N, H)
    dweight : array (V, H)
        Nonzero only in the rows of the targets and the sampled classes.
    dbias : array (V,) or None
    """
    xp = namespace(h, weight, targets, sampled, names=["h", "weight", "targets", "sampled"])
    check_float(h, "h", xp)
    N, V = h.shape[0], weight.shape[0]
    if targets.shape != (N,) or sampled.ndim != 1:
        raise ValueError(f"targets must have shape ({N},) and sampled (S,), got "
                         f"{tuple(targets.shape)} and {tuple(sampled.shape)}")
    dtype = h.dtype
    W_t = xp.take(weight, targets, axis=0)  # (N, H)
    W_s = xp.take(weight, sampled, axis=0)  # (S, H)
    z_t = xp.sum(h * W_t, axis=1) - xp.astype(log_count_targets, dtype)
    z_s = h @ xp.matrix_transpose(W_s) - xp.astype(log_count_sampled, dtype)
    if bias is not None:
        z_t = z_t + xp.take(bias, targets)
        z_s = z_s + xp.take(bias, sampled)
    hit = targets[:, None] == sampled[None, :]  # an accidental hit is no negative
    z_s = xp.where(hit, xp.asarray(-math.inf, dtype=dtype, device=device_of(h)), z_s)
    m = xp.maximum(xp.max(z_s, axis=1), z_t)
    e_t = xp.exp(z_t - m)
    e_s = xp.exp(z_s - m[:, None])
    s = e_t + xp.sum(e_s, axis=1)
    loss = xp.sum(xp.log(s) + m - z_t) / N
    # d loss / d z = (softmax over the candidates - onehot(target)) / N
    dz_t = (e_t / s - 1.0) / N  # (N,)
    dz_s = e_s / (s[:, None] * N)  # (N, S); zero at the hits
    dh = dz_t[:, None] * W_t + dz_s @ W_s
    rows = xp.concat([targets, xp.astype(sampled, targets.dtype)])
    dW = index_add(V, rows, xp.concat([dz_t[:, None] * h, xp.matrix_transpose(dz_s) @ h]),
                   xp=xp)
    db = None
    if bias is not None:
        db = index_add(V, rows, xp.concat([dz_t, xp.sum(dz_s, axis=0)])[:, None], xp=xp)[:, 0]
    return loss, dh, dW, db


def draw(num_classes, num_sampled, generator, dtype, *, xp, device):
    """One step's candidates on ``xp``/``device``: ``(ids (S,), log_count (S,))``, drawn on the
    host from ``generator``'s NumPy stream (a :class:`~xprnn.backend.Generator`, whose state a
    training state saves, so a resumed run draws the same candidates)."""
    u = generator.uniform((num_sampled,), "float64", xp=np, device="cpu")
    ids = from_numpy(log_uniform_sample(u, num_classes), xp, device)
    return ids, log_uniform_log_count(ids, num_classes, num_sampled, dtype, xp=xp)
