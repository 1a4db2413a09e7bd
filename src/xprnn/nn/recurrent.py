"""The time loop and backpropagation through time, written once for every cell.

One *direction* of one layer is: project every time step's input in one matrix product, then
per step the recurrent product ``gh = h_prev @ W_rec`` and the cell's pointwise forward; backward
runs the cell's pointwise backward over reversed time, ``dh_prev = dgh @ W_hh``, and forms the
weight gradients after the loop in one large product each. The pointwise functions come through
the kernel seam (:func:`xprnn.backend.pointwise`), so a backend may run each as one compiled
kernel.

Variable lengths are a boolean mask: on a padded step the state is carried unchanged and the
output is zero. The reverse direction runs the same loop on each row's valid part reversed in
time (``reverse_index``), so it starts at each row's last valid step, as PyTorch's packed
sequences do.

Shapes: ``T`` time steps, ``B`` batch, ``I`` input size, ``H`` hidden size, ``G`` gate blocks.
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import device_of, pointwise

__all__ = [
    "Lengths", "DirectionCache", "direction_forward", "direction_backward",
    "lengths_info",
]


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


def _reverse(a, lengths, *, xp):
    """Reverse ``a`` (T, B, F) in time, per row's valid part when there are lengths."""
    if lengths is None:
        return xp.flip(a, axis=0)
    T, B, F = a.shape
    return xp.reshape(xp.take(xp.reshape(a, (T * B, F)), lengths.rev, axis=0), (T, B, F))


class DirectionCache(NamedTuple):
    """What :func:`direction_backward` needs from :func:`direction_forward`."""

    cell: object
    p: dict
    weights: object  # the cell's Weights
    x: object  # (T, B, I), in the direction's own time order
    steps: list  # per-step pointwise caches
    h_prev: object  # (T, B, H or P): the recurrent input of each step (h_prev, masked)
    lengths: object  # Lengths or None
    reverse: bool
    h_full: object  # (T, B, H): the outputs before the projection, or None without one
    noise: object  # Noise or None


def _scan(cell, w, xw, state, lengths, keep, W_proj=None, noise=None, *, xp):
    """Run the cell over time. Returns outputs ``(T, B, H)`` (P with a projection), the final
    state, and (when ``keep``) the per-step caches, the recurrent input of each step (``h_prev``,
    masked with recurrent dropout) and the unprojected outputs (with a projection)."""
    # the step body runs T times: everything it looks up is bound to a local first
    step = pointwise(cell.forward, xp=xp, dtype=xw.dtype)
    W_rec, b_rec, fw, ns = w.W_rec, w.b_rec, w.fw, len(state)
    T = xw.shape[0]
    masks = [None] * T if lengths is None else lengths.masks
    rec_mask = None if noise is None else noise.rec_mask
    zone = None if noise is None else noise.zone
    outs, caches, prev, full = [], [], [], []
    for t in range(T):
        h_in = state[0] if rec_mask is None else state[0] * rec_mask
        gh = h_in @ W_rec
        if b_rec is not None:
            gh = gh + b_rec
        res = step(xw[t, ...], gh, *state, *fw)
        new = res[:ns]
        if W_proj is not None:  # h = h_full W_hr^T: the state and output shrink to P
            new = (res[0] @ W_proj,) + new[1:]
        if zone is not None:  # zoneout: each unit keeps its previous value where z says so
            new = tuple(s_new if z is None else s_new + z[t] * (s_old - s_new)
                        for s_new, s_old, z in zip(new, state, zone))
        if keep:
            prev.append(h_in)
            caches.append(res[ns:])
            if W_proj is not None:
                full.append(res[0])
        m = masks[t]
        if m is not None:
            # padded rows: keep the state, emit zeros
            new = tuple(xp.where(m, s_new, s_old) for s_new, s_old in zip(new, state))
            outs.append(xp.where(m, new[0], 0.0))
        else:
            outs.append(new[0])
        state = new
    return xp.stack(outs), state, caches, prev, full


def _scan_backward(cell, w, caches, d_out, dstate, lengths, W_hr=None, noise=None, *, xp):
    """BPTT over the caches of :func:`_scan`. Returns ``dxw``, ``dgh`` ``(T, B, G*H)``, the
    gradient of the initial state and (with a projection ``W_hr (P, H)``) the gradients of the
    projected outputs ``(T, B, P)``."""
    step_backward = pointwise(cell.backward, xp=xp, dtype=d_out.dtype)
    W_hh, bw = w.W_hh, w.bw
    T = len(caches)
    masks = [None] * T if lengths is None else lengths.masks
    rec_mask = None if noise is None else noise.rec_mask
    zone = None if noise is None else noise.zone
    dxws, dghs, dhs = [], [], []
    for t in range(T - 1, -1, -1):
        dh = dstate[0] + d_out[t, ...]
        m = masks[t]
        if m is not None:
            # a padded row passed the state through untouched and its output was constant zero
            step_in = (xp.where(m, dh, 0.0),) + tuple(xp.where(m, d, 0.0) for d in dstate[1:])
        else:
            step_in = (dh,) + dstate[1:]
        if zone is not None:  # back through s = z s_prev + (1 - z) s_new
            kept = tuple(None if z is None else z[t] * d for d, z in zip(step_in, zone))
            step_in = tuple(d if z is None else d - k for d, z, k in zip(step_in, zone, kept))
        if W_hr is not None:  # back through h = h_full W_hr^T
            dhs.append(step_in[0])
            step_in = (step_in[0] @ W_hr,) + step_in[1:]
        res = step_backward(*step_in, *caches[t], *bw)
        dxw, dgh, direct = res[0], res[1], res[2]
        dh_prev = dgh @ W_hh
        if rec_mask is not None:  # h_prev entered the product through the dropout mask
            dh_prev = dh_prev * rec_mask
        dprev = (dh_prev if direct is None else direct + dh_prev,) + res[3:]
        if zone is not None:
            dprev = tuple(dp if k is None else dp + k for dp, k in zip(dprev, kept))
        dstate = dprev if m is None else tuple(xp.where(m, dp, d) for dp, d in zip(dprev, dstate))
        dxws.append(dxw)
        dghs.append(dgh)
    dxw = xp.stack(dxws[::-1])
    # RNN and LSTM: the two gradients are the same arrays; stack them once
    same = all(a is b for a, b in zip(dxws, dghs))
    dh = xp.stack(dhs[::-1]) if dhs else None
    return dxw, (dxw if same else xp.stack(dghs[::-1])), dstate, dh


def direction_forward(cell, p, x, state0, lengths, reverse, keep=True, noise=None, *, xp):
    """One layer, one direction.

    Parameters
    ----------
    cell : Cell
    p : dict
        The cell's parameters by name (``weight_ih (G*H, I)``, ``weight_hh (G*H, H)``,
        ``bias_ih``, ``bias_hh`` (``(G*H,)`` or None), and with a projection ``weight_hr
        (P, H)``, when ``weight_hh`` is ``(G*H, P)``).
    x : array (T, B, I)
    state0 : tuple of arrays (B, H)
    lengths : Lengths or None
        From :func:`lengths_info`.
    reverse : bool
        Run from each row's last valid step back to the first.
    keep : bool
        Keep what :func:`direction_backward` needs (False for inference: no cache).
    noise : Noise, optional
        Recurrent dropout and zoneout (:mod:`xprnn.nn.noise`).

    Returns
    -------
    out : array (T, B, H)
    state : tuple of arrays (B, H)
        The state after each row's last valid step.
    cache : DirectionCache, or None when not ``keep``
    """
    T, B, I = x.shape
    if reverse:
        x = _reverse(x, lengths, xp=xp)
    w = cell.prepare(p, xp=xp)
    # the input projection of every step in one matrix product
    xw = xp.reshape(x, (T * B, I)) @ w.W_in
    if w.b_in is not None:
        xw = xw + w.b_in
    xw = xp.reshape(xw, (T, B, w.W_in.shape[1]))
    W_hr = p.get("weight_hr")  # a projection of the output (LSTM proj_size), or None
    W_proj = None if W_hr is None else xp.matrix_transpose(W_hr)
    out, state, caches, prev, full = _scan(cell, w, xw, state0, lengths, keep, W_proj, noise,
                                           xp=xp)
    if reverse:
        out = _reverse(out, lengths, xp=xp)
    if not keep:
        return out, state, None
    return out, state, DirectionCache(cell, p, w, x, caches, xp.stack(prev), lengths, reverse,
                                      xp.stack(full) if full else None, noise)


def direction_backward(cache, d_out, d_state, *, xp):
    """BPTT for one layer and direction.

    Parameters
    ----------
    cache : DirectionCache
        From :func:`direction_forward`.
    d_out : array (T, B, H)
        Gradient of the loss with respect to ``out``.
    d_state : tuple of arrays (B, H)
        Gradient with respect to the final state (zeros if unused).

    Returns
    -------
    dx : array (T, B, I)
    dstate0 : tuple of arrays (B, H)
    grads : dict
        ``weight_ih``, ``weight_hh``, and ``bias_ih``, ``bias_hh`` when the cell has biases,
        ``weight_hr`` with a projection.
    """
    c = cache
    T, B, I = c.x.shape
    if c.reverse:
        d_out = _reverse(d_out, c.lengths, xp=xp)
    W_hr = c.p.get("weight_hr")
    dxw, dgh, dstate0, dh = _scan_backward(c.cell, c.weights, c.steps, d_out, d_state,
                                           c.lengths, W_hr, c.noise, xp=xp)
    GH = dxw.shape[-1]
    dxw2 = xp.reshape(dxw, (T * B, GH))
    dgh2 = xp.reshape(dgh, (T * B, GH))
    # weight gradients summed over all steps, each in one large product
    grads = {
        "weight_ih": xp.matrix_transpose(dxw2) @ xp.reshape(c.x, (T * B, I)),
        "weight_hh": xp.matrix_transpose(dgh2) @ xp.reshape(c.h_prev, (T * B, c.h_prev.shape[-1])),
    }
    if W_hr is not None:  # dW_hr = sum_t dh_t^T h_full_t
        P, H = W_hr.shape
        grads["weight_hr"] = xp.matrix_transpose(xp.reshape(dh, (T * B, P))) @ xp.reshape(
            c.h_full, (T * B, H))
    if c.p.get("bias_ih") is not None:
        grads["bias_ih"] = xp.sum(dxw2, axis=0)
        grads["bias_hh"] = grads["bias_ih"] if dgh is dxw else xp.sum(dgh2, axis=0)
    dx = xp.reshape(dxw2 @ c.p["weight_ih"], (T, B, I))
    if c.reverse:
        dx = _reverse(dx, c.lengths, xp=xp)
    return dx, dstate0, grads
