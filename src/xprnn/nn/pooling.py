"""Pooling a recurrent layer's outputs over time into one vector per row, forward beside
backward, padding never leaking into the result.

- ``last``: the state after each row's last valid step (the top layer's final states of both
  directions when bidirectional), taken from ``h_n``;
- ``mean``: the mean of the outputs over valid steps;
- ``max``: their maximum; the gradient goes to the step that won (ties share it).
"""

from __future__ import annotations

from ..backend import device_of

__all__ = ["POOLINGS", "length_mask", "pool", "pool_backward"]

POOLINGS = ("last", "mean", "max")


def length_mask(lengths, T, *, xp):
    """``(B, T, 1)`` boolean mask, true where step ``t < lengths[b]``."""
    t = xp.arange(T, dtype=lengths.dtype, device=device_of(lengths))
    return (t[None, :] < lengths[:, None])[:, :, None]


def pool(how, out, h_n, mask, num_directions, *, xp):
    """Pool batch-first outputs ``out (B, T, F)``.

    Parameters
    ----------
    how : {"last", "mean", "max"}
    out : array (B, T, D*H)
    h_n : array (L*D, B, H) (the first state, ``h``)
    mask : bool array (B, T, 1) or None (every step valid)
    num_directions : int

    Returns
    -------
    pooled : array (B, D*H)
    cache : for :func:`pool_backward`
    """
    if how == "last":
        if num_directions == 2:
            return xp.concat([h_n[-2, ...], h_n[-1, ...]], axis=-1), None
        return h_n[-1, ...], None
    B, T, _ = out.shape
    m = mask if mask is not None else xp.ones((B, T, 1), dtype=xp.bool, device=device_of(out))
    if how == "mean":
        n = xp.sum(xp.astype(m, out.dtype), axis=1)  # (B, 1) valid steps per row
        return xp.sum(out, axis=1) / n, (m, n)
    masked = xp.where(m, out, -xp.inf)
    best = xp.max(masked, axis=1)
    return best, (m, masked == best[:, None, :])


def pool_backward(how, dpooled, cache, num_layers, num_directions, *, xp):
    """Gradients of :func:`pool`: ``(d_out (B, T, D*H) or None, d_h (L*D, B, H) or None)``."""
    if how == "last":
        D = num_directions
        H = dpooled.shape[-1] // D
        parts = [dpooled[:, d * H:(d + 1) * H] for d in range(D)]
        zeros = xp.zeros((dpooled.shape[0], H), dtype=dpooled.dtype, device=device_of(dpooled))
        return None, xp.stack([zeros] * (num_layers * D - D) + parts)
    m, aux = cache
    if how == "mean":
        return xp.where(m, (dpooled / aux)[:, None, :], 0.0), None
    return xp.where(aux, dpooled[:, None, :], 0.0), None
