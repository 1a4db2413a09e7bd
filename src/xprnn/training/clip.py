"""Gradient clipping by the global L2 norm (``torch.nn.utils.clip_grad_norm_``, without mutation).

::

    total = sqrt(sum_k ||g_k||^2)
    g_k  *= min(1, max_norm / (total + 1e-6))
"""

from __future__ import annotations

import math
import numbers

from ..backend import namespace

__all__ = ["clip_grad_norm"]


def _l2(x, *, xp):
    """L2 norm of all elements of ``x`` (0-d array)."""
    # linalg is an optional extension of the standard; every backend we support has it
    if hasattr(xp, "linalg"):
        return xp.linalg.vector_norm(x)
    return xp.sqrt(xp.sum(x * x))


def clip_grad_norm(grads, max_norm):
    """Scale all gradients together so their global L2 norm is at most ``max_norm``.

    Parameters
    ----------
    grads : dict of str to array (or None)
        Gradients of any shapes, all on one backend and device; ``None`` entries are skipped.
    max_norm : float > 0
        Largest allowed global norm (``inf`` disables clipping).

    Returns
    -------
    clipped : dict of str to array
        A new dict; every array is ``g * max_norm / (total + 1e-6)`` when that factor is below 1
        (PyTorch's formula), else the input array itself. Inputs are never modified.
    total_norm : float
        Global norm before clipping. When it is not finite (``nan``/``inf``) it is returned as
        is, and the gradients unchanged, so the caller can skip the step or stop.
    """
    if (
        isinstance(max_norm, bool)
        or not isinstance(max_norm, numbers.Real)
        or math.isnan(max_norm)
        or max_norm <= 0
    ):
        raise ValueError(f"max_norm must be a positive number, got {max_norm!r}")
    present = {k: g for k, g in grads.items() if g is not None}
    if not present:
        return dict(grads), 0.0
    xp = namespace(*present.values(), names=[f"grads[{k!r}]" for k in present])
    norms = [_l2(g, xp=xp) for g in present.values()]
    dtype = xp.result_type(*norms)
    # norm of the per-array norms: one device-to-host transfer for the whole dict
    total = float(_l2(xp.stack([xp.astype(n, dtype) for n in norms]), xp=xp))
    if not math.isfinite(total):
        return dict(grads), total
    coef = max_norm / (total + 1e-6)
    if coef >= 1.0:
        return dict(grads), total
    return {k: (None if g is None else g * coef) for k, g in grads.items()}, total
