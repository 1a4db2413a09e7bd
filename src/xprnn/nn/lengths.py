"""Variable lengths: the per-step masks and the per-row reversal the time loop needs, made
once per batch on the device from lengths checked on the host.

On a padded step the state is carried unchanged and the output is zero; the reverse direction
reads each row's valid steps from last to first, so it starts at each row's last valid step, as
PyTorch's packed sequences do.
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import device_of

__all__ = ["Lengths", "lengths_info", "reverse_time"]


class Lengths(NamedTuple):
    """Everything the loop needs about variable lengths, made once per batch on the device.

    Attributes
    ----------
    masks : list of T (bool (B, 1) array or None)
        Per-step masks; ``None`` for a step where every row is valid: the first
        ``min(lengths)`` steps, which in a batch bucketed by length are nearly all of them, skip
        the masking passes.
    rev : int array (T*B,)
        Flat gather index reversing each row's valid steps (its own inverse).
    """

    masks: list
    rev: object


def lengths_info(lengths, lengths_host, T, *, xp):
    """:class:`Lengths` for ``lengths`` (int array (B,) on the device) whose host copy
    ``lengths_host`` (NumPy) is known, or ``None`` without lengths."""
    if lengths is None:
        return None
    device = device_of(lengths)
    t = xp.arange(T, dtype=lengths.dtype, device=device)[:, None]
    valid = t < lengths[None, :]  # (T, B)
    full = int(lengths_host.min())
    masks = [None] * full + [valid[s, :, None] for s in range(full, T)]
    B = lengths.shape[0]
    src_t = xp.where(valid, lengths[None, :] - 1 - t, t)
    b = xp.arange(B, dtype=lengths.dtype, device=device)[None, :]
    return Lengths(masks, xp.reshape(src_t * B + b, (-1,)))


def reverse_time(a, lengths, *, xp):
    """Reverse ``a`` (T, B, F) in time, per row's valid part when there are lengths."""
    if lengths is None:
        return xp.flip(a, axis=0)
    T, B, F = a.shape
    return xp.reshape(xp.take(xp.reshape(a, (T * B, F)), lengths.rev, axis=0), (T, B, F))
