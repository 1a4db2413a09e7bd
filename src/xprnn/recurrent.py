"""The time loop and backpropagation through time, written once for every cell.

One *direction* of one layer is: project every time step's input in one matrix product, run the
cell's step over time, and (backward) run the step backward over reversed time, then form the
weight gradients in one large product each. Variable lengths are a boolean mask: on a padded
step the state is carried unchanged and the output is zero. The reverse direction runs the same
loop on each row's valid part reversed in time (``reverse_index``), so it starts at each row's
last valid step, as PyTorch's packed sequences do.

Shapes: ``T`` time steps, ``B`` batch, ``I`` input size, ``H`` hidden size, ``G`` gate blocks.
"""

from __future__ import annotations

__all__ = [
    "direction_forward", "direction_backward", "reverse_index", "length_mask", "step_masks",
]


def length_mask(lengths, T, *, xp):
    """``(T, B, 1)`` boolean mask, true where step ``t < lengths[b]``; ``None`` if no lengths."""
    if lengths is None:
        return None
    t = xp.arange(T, device=lengths.device)
    return (t[:, None] < lengths[None, :])[:, :, None]


def step_masks(lengths, T, *, xp):
    """One ``(B, 1)`` mask per step, or ``None`` for a step where every row is valid: the first
    ``min(lengths)`` steps, which in a batch bucketed by length are nearly all of them, skip the
    masking passes. ``None`` without lengths."""
    if lengths is None:
        return None
    mask = length_mask(lengths, T, xp=xp)
    full = int(xp.min(lengths))
    return [None] * full + [mask[t, ...] for t in range(full, T)]


def reverse_index(lengths, T, *, xp):
    """Flat gather index that reverses each row's first ``lengths[b]`` steps of a ``(T*B, ...)``
    array and leaves its padding in place. It is its own inverse.

    ``None`` without lengths: then a plain ``flip`` over time is the reversal.
    """
    if lengths is None:
        return None
    B = lengths.shape[0]
    t = xp.arange(T, dtype=lengths.dtype, device=lengths.device)[:, None]
    src_t = xp.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    b = xp.arange(B, dtype=lengths.dtype, device=lengths.device)[None, :]
    return xp.reshape(src_t * B + b, (-1,))


def _reverse(a, rev, *, xp):
    """Reverse ``a`` (T, B, F) in time, per row when ``rev`` is a gather index."""
    if rev is None:
        return xp.flip(a, axis=0)
    T, B, F = a.shape
    return xp.reshape(xp.take(xp.reshape(a, (T * B, F)), rev, axis=0), (T, B, F))


def _scan(cell, xw, state, fw, masks, keep, *, xp):
    """Run ``cell.step`` over time. Returns outputs ``(T, B, H)``, the final state, and (when
    ``keep``, for backward) the per-step caches and the states entering each step."""
    outs, caches, prev = [], [], []
    for t in range(xw.shape[0]):
        new, cache = cell.step(xw[t, ...], state, fw, xp=xp)
        if keep:
            prev.append(state)
            caches.append(cache)
        m = None if masks is None else masks[t]
        if m is not None:
            # padded rows: keep the state, emit zeros
            new = tuple(xp.where(m, s_new, s_old) for s_new, s_old in zip(new, state))
            outs.append(xp.where(m, new[0], 0.0))
        else:
            outs.append(new[0])
        state = new
    return xp.stack(outs), state, caches, prev


def _scan_backward(cell, caches, d_out, dstate, bw, masks, *, xp):
    """BPTT over the caches of :func:`_scan`. Returns ``dxw``, ``dgh`` ``(T, B, G*H)`` and the
    gradient of the initial state."""
    dxws, dghs = [], []
    for t in range(len(caches) - 1, -1, -1):
        dh = dstate[0] + d_out[t, ...]
        m = None if masks is None else masks[t]
        if m is not None:
            # a padded row passed the state through untouched and its output was constant zero
            step_in = (xp.where(m, dh, 0.0),) + tuple(xp.where(m, d, 0.0) for d in dstate[1:])
            dxw, dgh, dprev = cell.step_backward(step_in, caches[t], bw, xp=xp)
            dstate = tuple(xp.where(m, dp, d) for dp, d in zip(dprev, dstate))
        else:
            dxw, dgh, dstate = cell.step_backward((dh,) + tuple(dstate[1:]), caches[t], bw, xp=xp)
        dxws.append(dxw)
        dghs.append(dgh)
    dxw = xp.stack(dxws[::-1])
    # RNN and LSTM: the two gradients are the same arrays; stack them once
    same = all(a is b for a, b in zip(dxws, dghs))
    return dxw, (dxw if same else xp.stack(dghs[::-1])), dstate


def direction_forward(cell, p, x, state0, masks, rev, reverse, keep=True, *, xp):
    """One layer, one direction.

    Parameters
    ----------
    cell : Cell
    p : dict
        ``W_ih (G*H, I)``, ``W_hh (G*H, H)``, ``b_ih``, ``b_hh`` (``(G*H,)`` or None).
    x : array (T, B, I)
    state0 : tuple of arrays (B, H)
    masks : list of T bool arrays (B, 1) or None (from :func:`step_masks`), or None
    rev : gather index from :func:`reverse_index` or None
    reverse : bool
        Run from each row's last valid step back to the first.
    keep : bool
        Keep what :func:`direction_backward` needs (False for inference: no cache).

    Returns
    -------
    out : array (T, B, H)
    state : tuple of arrays (B, H)
        The state after each row's last valid step.
    cache : tuple for :func:`direction_backward`, or None when not ``keep``
    """
    T, B, I = x.shape
    if reverse:
        x = _reverse(x, rev, xp=xp)
    W_in, b_in, fw, bw = cell.prepare(p["W_ih"], p["W_hh"], p["b_ih"], p["b_hh"], xp=xp)
    # the input projection of every step in one matrix product
    xw = xp.reshape(x, (T * B, I)) @ W_in
    if b_in is not None:
        xw = xw + b_in
    xw = xp.reshape(xw, (T, B, W_in.shape[1]))
    out, state, caches, prev = _scan(cell, xw, state0, fw, masks, keep, xp=xp)
    if reverse:
        out = _reverse(out, rev, xp=xp)
    if not keep:
        return out, state, None
    h_prev = xp.stack([s[0] for s in prev])
    return out, state, (cell, p, bw, x, caches, h_prev, masks, rev, reverse)


def direction_backward(cache, d_out, d_state, *, xp):
    """BPTT for one layer and direction.

    Parameters
    ----------
    cache : from :func:`direction_forward`
    d_out : array (T, B, H)
        Gradient of the loss with respect to ``out``.
    d_state : tuple of arrays (B, H)
        Gradient with respect to the final state (zeros if unused).

    Returns
    -------
    dx : array (T, B, I)
    dstate0 : tuple of arrays (B, H)
    grads : dict with ``W_ih``, ``W_hh``, ``b_ih``, ``b_hh`` (biases None if absent)
    """
    cell, p, bw, x, caches, h_prev, masks, rev, reverse = cache
    T, B, I = x.shape
    if reverse:
        d_out = _reverse(d_out, rev, xp=xp)
    dxw, dgh, dstate0 = _scan_backward(cell, caches, d_out, d_state, bw, masks, xp=xp)
    GH = dxw.shape[-1]
    dxw2 = xp.reshape(dxw, (T * B, GH))
    dgh2 = xp.reshape(dgh, (T * B, GH))
    # weight gradients summed over all steps, each in one large product
    db_ih = None if p["b_ih"] is None else xp.sum(dxw2, axis=0)
    grads = {
        "W_ih": xp.matrix_transpose(dxw2) @ xp.reshape(x, (T * B, I)),
        "W_hh": xp.matrix_transpose(dgh2) @ xp.reshape(h_prev, (T * B, h_prev.shape[-1])),
        "b_ih": db_ih,
        "b_hh": None if p["b_hh"] is None else (db_ih if dgh is dxw else xp.sum(dgh2, axis=0)),
    }
    dx = xp.reshape(dxw2 @ p["W_ih"], (T, B, I))
    if reverse:
        dx = _reverse(dx, rev, xp=xp)
    return dx, dstate0, grads
