"""Input checks of the recurrent layers: one clear error per wrong argument, before any maths.

Lengths are checked on the host (they usually come from there: a list or a NumPy array from the
batcher) and reach the device once per call, with the per-step masks and the reversal index
built from them (:func:`xprnn.nn.lengths.lengths_info`).
"""

from __future__ import annotations

import numpy as np

from ..backend import check_float, from_numpy, namespace, to_numpy
from .lengths import lengths_info

__all__ = ["check_sequence", "check_lengths", "positive_int", "check_grad", "check_cache"]


def positive_int(value, name):
    """``int(value)``, or a ``ValueError`` naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_lengths(lengths, T, B):
    """``lengths`` as a NumPy int64 array ``(B,)`` with entries in ``[1, T]``, or an error."""
    n = np.asarray(to_numpy(lengths))
    if n.ndim != 1 or n.shape[0] != B:
        raise ValueError(f"lengths must hold one int per batch row ({B}), got shape {n.shape}")
    if not np.issubdtype(n.dtype, np.integer):
        raise TypeError(f"lengths must be integers, got dtype {n.dtype}")
    if n.min() < 1 or n.max() > T:
        raise ValueError(
            f"lengths must lie in [1, {T}] (the number of time steps), got values "
            f"{int(n.min())}..{int(n.max())}"
        )
    return n.astype(np.int64)


def check_sequence(layer, x, h0, lengths):
    """Check a recurrent layer's inputs and bring them to time-major form.

    Returns
    -------
    xp : namespace
    x : array (T, B, I)
    init : list of arrays (L*D, B, H), one per state
    lengths : Lengths or None
    unbatched : bool
    """
    ns = layer.cell.num_states
    states = () if h0 is None else (h0 if isinstance(h0, tuple) else (h0,))
    if len(states) not in (0, ns):
        want = {1: "one array", 2: "a pair (h0, c0)"}.get(ns, f"a tuple of {ns} arrays")
        raise TypeError(f"h0 must be {want}, got a tuple of {len(states)}")
    state_names = ("h0", "c0") if ns <= 2 else tuple(f"h0[{i}]" for i in range(ns))
    names = ["x", *state_names[: len(states)], f"{type(layer).__name__} parameters"]
    anyp = next(iter(layer.params.values()))
    xp = namespace(x, *states, anyp, names=names)
    check_float(x, "x", xp, layer.dtype)
    if x.ndim not in (2, 3):
        raise ValueError(f"x must have 2 (unbatched) or 3 dimensions, got shape {x.shape}")
    if x.shape[-1] != layer.input_size:
        raise ValueError(
            f"x has {x.shape[-1]} features in its last axis, expected input_size="
            f"{layer.input_size}"
        )
    unbatched = x.ndim == 2
    if unbatched:
        x = x[:, None, :]
    elif layer.batch_first:
        x = xp.permute_dims(x, (1, 0, 2))
    T, B = x.shape[0], x.shape[1]
    if T < 1:
        raise ValueError("x must have at least one time step")
    LD = layer.num_layers * layer.num_directions
    init = []
    for name, s, n in zip(names[1:], states, layer.state_sizes):
        check_float(s, name, xp, layer.dtype)
        expected = (LD, n) if unbatched else (LD, B, n)
        if tuple(s.shape) != expected:
            raise ValueError(f"{name} has shape {tuple(s.shape)}, expected {expected}")
        init.append(s[:, None, :] if unbatched else s)
    if not init:
        init = [xp.zeros((LD, B, n), dtype=layer.dtype, device=layer.device)
                for n in layer.state_sizes]
    info = None
    if lengths is not None:
        n = check_lengths(lengths, T, B)
        info = lengths_info(from_numpy(n, xp, layer.device), n, T, xp=xp)
    return xp, x, init, info, unbatched


def check_grad(d, expected, name, of=None):
    """Raise unless ``d`` (a gradient, or None) has the ``expected`` shape, that of forward's
    ``of`` (by default ``name`` without its ``d_``)."""
    if d is not None and tuple(d.shape) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(d.shape)}, expected {tuple(expected)} (the "
                         f"shape of {of or name.removeprefix('d_')} from forward)")


def check_cache(layer, cache, kind, *, keep=True):
    """Raise unless ``cache`` is a ``kind`` that ``layer``'s forward made (and kept): a
    NamedTuple whose ``owner`` field is a weak reference to the layer. ``keep``: whether the
    layer's forward has a ``keep`` argument (to word the error)."""
    if not isinstance(cache, kind):
        if cache is None:
            got = ("None (forward(..., keep=False) and layer(x) keep no cache)" if keep
                   else "None")
        else:
            got = type(cache).__name__
        raise TypeError(f"cache must be the {kind.__name__} returned by this layer's "
                        f"forward(x){' (keep=True)' if keep else ''}, got {got}")
    owner = cache.owner() if cache.owner is not None else None
    if owner is not layer:
        raise ValueError(f"cache was made by another layer ({owner!r}), not by this one "
                         f"({layer!r}); pass the cache of this layer's forward")
