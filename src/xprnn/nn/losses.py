"""Softmax, log-softmax and the losses, each returning its gradient beside its value."""

from __future__ import annotations

import math

from ..backend import check_float, device_of, namespace

__all__ = ["softmax", "log_softmax", "softmax_cross_entropy", "mse_loss"]


def log_softmax(x, axis=-1):
    """``x - logsumexp(x)`` along ``axis``; the max is subtracted first, so +-1e4 is safe."""
    xp = namespace(x, names=["x"])
    shifted = x - xp.max(x, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


def softmax(x, axis=-1):
    """``exp(x) / sum(exp(x))`` along ``axis``, computed as ``exp(x - max)`` for stability."""
    xp = namespace(x, names=["x"])
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def softmax_cross_entropy(logits, targets, mask=None):
    """Mean cross-entropy of integer ``targets`` under ``softmax(logits)``, and its gradient.

    Parameters
    ----------
    logits : array (..., C)
    targets : integer array (...)
        Class ids in ``[0, C)``.
    mask : bool or float array (...), optional
        Items with mask 0/False are left out of the mean (padding).

    Returns
    -------
    loss : 0-d array
        ``sum(mask * -log p[target]) / sum(mask)``.
    dlogits : array (..., C)
        ``(softmax(logits) - onehot(targets)) * mask / sum(mask)``.
    """
    xp = namespace(logits, targets, mask, names=["logits", "targets", "mask"])
    check_float(logits, "logits", xp)
    if not xp.isdtype(targets.dtype, "integral"):
        raise TypeError(f"targets must be integer class ids, got dtype {targets.dtype}")
    C = logits.shape[-1]
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"targets has shape {tuple(targets.shape)}, expected logits.shape[:-1] = "
            f"{tuple(logits.shape[:-1])}"
        )
    # one device-to-host read in the common case; the min and max only to word the error
    if math.prod(targets.shape) and bool(xp.any((targets < 0) | (targets >= C))):
        raise ValueError(
            f"targets must lie in [0, {C}) for {C} classes, got values "
            f"{int(xp.min(targets))}..{int(xp.max(targets))}"
        )
    # Few passes over the (..., C) block: it is the whole cost of a word-level language
    # model's loss (at 8,000 words, four fifths of a step once made twelve passes). The
    # target's logit is gathered from the flat block with `take` (the standard had no gather
    # along an axis before 2024.12), and exp() runs once, for the loss and the gradient alike.
    m = xp.max(logits, axis=-1, keepdims=True)
    e = xp.exp(logits - m)
    s = xp.sum(e, axis=-1, keepdims=True)
    N = math.prod(targets.shape)
    flat_t = xp.reshape(targets, (-1,))
    if flat_t.dtype not in (xp.int32, xp.int64):  # torch's take accepts no other index dtype
        flat_t = xp.astype(flat_t, xp.int64)
    picked = xp.take(xp.reshape(logits, (-1,)),
                     xp.arange(N, dtype=flat_t.dtype, device=device_of(targets)) * C + flat_t)
    nll = xp.reshape(xp.log(s), (N,)) + xp.reshape(m, (N,)) - picked
    nll = xp.reshape(nll, tuple(targets.shape))
    if mask is None:
        if N == 0:
            raise ValueError("targets has no item to average over")
        w = xp.ones(nll.shape, dtype=logits.dtype, device=device_of(logits))
        n = xp.sum(w)
    else:
        if tuple(mask.shape) != tuple(nll.shape):
            raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {tuple(nll.shape)}")
        w = xp.astype(mask, logits.dtype)
        n = xp.sum(w)
        if float(n) <= 0:  # only a mask can leave nothing (a read the common case skips)
            raise ValueError("mask leaves no item to average over")
    loss = xp.sum(w * nll) / n
    wn = (w / n)[..., None]
    # (softmax - onehot) * w / n: the softmax's 1/s folded into the weight, then the target
    # entries lowered by w / n, selected by comparison (the standard has no scatter)
    e *= wn / s  # in place: e is this function's own array
    onehot = targets[..., None] == xp.arange(C, dtype=targets.dtype, device=device_of(targets))
    dlogits = xp.where(onehot, e - wn, e)
    return loss, dlogits


def mse_loss(pred, target):
    """Mean squared error ``mean((pred - target)^2)`` and its gradient ``2 (pred - target) / N``."""
    xp = namespace(pred, target, names=["pred", "target"])
    check_float(pred, "pred", xp)
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"pred has shape {tuple(pred.shape)} but target {tuple(target.shape)}")
    diff = pred - target
    n = math.prod(diff.shape)
    return xp.sum(diff * diff) / n, diff * (2.0 / n)
