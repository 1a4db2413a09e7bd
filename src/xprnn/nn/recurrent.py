"""The time loop and backpropagation through time, written once for every cell.

One layer is: project every time step's input in one matrix product, then per step the
recurrent product ``gh = h_prev @ W_rec`` and the cell's pointwise forward; backward runs the
cell's pointwise backward over reversed time, ``dh_prev = dgh @ W_hh``, and forms the weight
gradients after the loop in one large product each. A bidirectional layer runs both directions
in the same loop, every per-step array carrying a leading direction axis. The pointwise
functions come through the kernel seam (:func:`xprnn.backend.pointwise`), so a backend may run
each as one compiled kernel.

Variable lengths are a boolean mask: on a padded step the state is carried unchanged and the
output is zero. The reverse direction reads each row's valid part reversed in time
(``Lengths.rev``), so it starts at each row's last valid step, as PyTorch's packed sequences do.
On a step where some row has ended, the loop calls the cell's *masked* pointwise functions
(:func:`xprnn.cells.base.masked`), which apply the mask inside the same call, so a masked step
costs no more calls than a full one; only where a projection or zoneout acts between the cell
and the carried state is the mask applied after them, by the loop.

Shapes: ``T`` time steps, ``B`` batch, ``I`` input size, ``H`` hidden size, ``G`` gate blocks.
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import pointwise
from ..cells.base import Weights
from .lengths import Lengths, lengths_info, reverse_time

__all__ = ["LayerCache", "layer_forward", "layer_backward", "Lengths", "lengths_info"]


class LayerCache(NamedTuple):
    """What :func:`layer_backward` needs from :func:`layer_forward`."""

    cell: object
    ps: list  # the parameters of each direction
    weights: object  # the cell's Weights, stacked over the directions when there are two
    x: object  # the input, (T, B, I), or (2, T, B, I): each direction's in its own time order
    steps: list  # per-step pointwise caches
    h_prev: list  # per direction (T, B, n): the recurrent input of each step (h_prev, masked)
    lengths: object  # Lengths or None
    h_full: list  # per direction (T, B, H): the outputs before the projection, or None
    noise: object  # Noise or None


def _stack(items, *, xp):
    """Per-direction arrays on a leading axis that broadcasts against the step's ``(D, B, n)``
    arrays: matrices ``(D, m, n)``, vectors ``(D, 1, n)``, constants ``(D, 1, 1)``."""
    if items[0] is None:
        return None
    a = xp.stack(items)
    extra = max(0, 2 - items[0].ndim)
    return xp.reshape(a, (len(items),) + (1,) * extra + tuple(items[0].shape))


def _row_major(a, *, xp):
    """``a`` laid out row by row, copied once per call where it is not: ``prepare`` returns
    transposed views of the parameters, and OpenBLAS multiplies ``h @ W`` 12-45% faster with a
    row-major ``W`` than with a transposed view at B >= 32 (same-run, 1 thread; equal at B = 1).
    Only the per-step matrix: copying ``W_in`` too made forward passes slower, not faster.
    Flattening in row-major order and restoring the shape is the standard's way to ask for it
    (a view where ``a`` is row-major already)."""
    if a is None:
        return None
    return xp.reshape(xp.reshape(a, (-1,)), tuple(a.shape))


def _over_time(arrays, D, *, xp):
    """Per-step arrays ``([D,] B, F)`` stacked over time, one ``(T, B, F)`` array per direction
    (each one contiguous, so later reshapes cost nothing)."""
    if D == 1:
        return [xp.stack(arrays)]
    return [xp.stack([a[d, ...] for a in arrays]) for d in range(D)]


def _stacked_weights(ws, *, xp):
    if len(ws) == 1:
        return ws[0]

    def st(name):
        return _stack([getattr(w, name) for w in ws], xp=xp)

    return Weights(st("W_in"), st("b_in"), st("W_rec"), st("b_rec"), st("W_hh"),
                   tuple(_stack(list(a), xp=xp) for a in zip(*(w.fw for w in ws))),
                   tuple(_stack(list(a), xp=xp) for a in zip(*(w.bw for w in ws))))


def _masks_inside(lengths, W_proj, zone):
    """Whether the length masks go into the cell's pointwise calls (its masked variants,
    :func:`xprnn.cells.base.masked`): yes, unless a projection or zoneout acts between the
    cell's new state and the state carried on."""
    return lengths is not None and W_proj is None and zone is None


def _scan(cell, w, xw, state, lengths, keep, W_proj=None, noise=None, *, xp):
    """Run the cell over time over ``xw``, a list of T per-step input projections. Returns the
    list of outputs (P entries with a projection, else H), the final state, and (when ``keep``)
    the per-step caches, the recurrent input of each step (``h_prev``, masked with recurrent
    dropout) and the unprojected outputs (with a projection)."""
    # the step body runs T times: everything it looks up is bound to a local first
    step = pointwise(cell.forward, xp=xp, dtype=state[0].dtype)
    W_rec, b_rec, fw, ns = w.W_rec, w.b_rec, w.fw, len(state)
    T = len(xw)
    masks = [None] * T if lengths is None else lengths.masks
    rec_mask = None if noise is None else noise.rec_mask
    zone = None if noise is None else noise.zone
    # the mask goes into the cell's pointwise call unless something comes between the cell and
    # the state (a projection, zoneout): then it is applied after them
    inside = _masks_inside(lengths, W_proj, zone)
    step_masked = pointwise(cell.masked_forward, xp=xp, dtype=state[0].dtype) if inside else None
    outs, caches, prev, full = [], [], [], []
    for t in range(T):
        h_in = state[0] if rec_mask is None else state[0] * rec_mask
        gh = h_in @ W_rec
        if b_rec is not None:
            gh += b_rec  # in place on the product, this step's own array (see layer_forward)
        m = masks[t]
        if m is not None and inside:
            res = step_masked(m, xw[t], gh, *state, *fw)
            if keep:
                prev.append(h_in)
                caches.append(res[ns + 1 :])
            state = res[:ns]
            outs.append(res[ns])
            continue
        res = step(xw[t], gh, *state, *fw)
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
        if m is not None:
            # padded rows: keep the state, emit zeros
            new = tuple(xp.where(m, s_new, s_old) for s_new, s_old in zip(new, state))
            outs.append(xp.where(m, new[0], 0.0))
        else:
            outs.append(new[0])
        state = new
    return outs, state, caches, prev, full


def _scan_backward(cell, w, caches, d_out, dstate, lengths, W_hr=None, noise=None, *, xp):
    """BPTT over the caches of :func:`_scan`, ``d_out`` a list of T per-step output gradients.
    Returns lists over time of ``dxw`` and ``dgh`` (the same list where the cell returns one
    array for both), the gradient of the initial state and, with a projection ``W_hr (P, H)``,
    the list of the gradients of the projected outputs."""
    step_backward = pointwise(cell.backward, xp=xp, dtype=dstate[0].dtype)
    W_hh, bw = w.W_hh, w.bw
    T = len(caches)
    masks = [None] * T if lengths is None else lengths.masks
    rec_mask = None if noise is None else noise.rec_mask
    zone = None if noise is None else noise.zone
    inside = _masks_inside(lengths, W_hr, zone)
    step_masked = (pointwise(cell.masked_backward, xp=xp, dtype=dstate[0].dtype) if inside
                   else None)
    dxws, dghs, dhs = [], [], []
    for t in range(T - 1, -1, -1):
        m = masks[t]
        if m is not None and inside:
            # padded rows: dgh is zero there, so dgh @ W_hh adds nothing to the state's
            # gradient, which the masked backward passes through in its direct term
            res = step_masked(m, d_out[t], *dstate, *caches[t], *bw)
            dxw, dgh = res[0], res[1]
            dh_prev = dgh @ W_hh
            if rec_mask is not None:
                dh_prev = dh_prev * rec_mask
            dh_prev += res[2]  # in place on the product, this step's own array
            dstate = (dh_prev,) + res[3:]
            dxws.append(dxw)
            dghs.append(dgh)
            continue
        dh = dstate[0] + d_out[t]
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
        if direct is not None:
            dh_prev += direct
        dprev = (dh_prev,) + res[3:]
        if zone is not None:
            dprev = tuple(dp if k is None else dp + k for dp, k in zip(dprev, kept))
        dstate = dprev if m is None else tuple(xp.where(m, dp, d) for dp, d in zip(dprev, dstate))
        dxws.append(dxw)
        dghs.append(dgh)
    # RNN and LSTM: the two gradients are the same arrays (None: stack them once)
    same = all(a is b for a, b in zip(dxws, dghs))
    return dxws[::-1], (None if same else dghs[::-1]), dstate, dhs[::-1]


def layer_forward(cell, ps, x, state0, lengths, keep=True, noise=None, *, xp):
    """One layer: one direction, or two run together.

    With two directions, the second reads each row's valid steps from last to first, and both
    advance in the same loop: one batched recurrent product and one pointwise call per step for
    the pair, which halves the calls per step (the cost that dominates on a GPU, and at small
    batches on the CPU).

    Parameters
    ----------
    cell : Cell
    ps : list of one or two dicts
        Each direction's parameters by the cell's names (``weight_ih (G*H, I)``,
        ``weight_hh (G*H, H)``, ``bias_ih``, ``bias_hh`` (``(G*H,)`` or None), and with a
        projection ``weight_hr (P, H)``, when ``weight_hh`` is ``(G*H, P)``).
    x : array (T, B, I)
    state0 : tuple of arrays (D, B, n), one per state (``n`` = P for a projected ``h``, else H)
    lengths : Lengths or None
        From :func:`lengths_info`.
    keep : bool
        Keep what :func:`layer_backward` needs (False for inference: no cache).
    noise : Noise, optional
        Recurrent dropout and zoneout (:mod:`xprnn.nn.noise`), for all the directions.

    Returns
    -------
    out : array (T, B, D*n)
        The directions' outputs side by side, each in the input's time order.
    state : tuple of arrays (D, B, n)
        The state after each row's last valid step.
    cache : LayerCache, or None when not ``keep``
    """
    D = len(ps)
    T, B, I = x.shape
    w = _stacked_weights([cell.prepare(p, xp=xp) for p in ps], xp=xp)
    if D == 1 and T > 1:  # (two directions: _stacked_weights made row-major copies already)
        w = w._replace(W_rec=_row_major(w.W_rec, xp=xp))
    W_hr = [p.get("weight_hr") for p in ps]  # a projection of the output (LSTM proj_size)
    W_proj = None if W_hr[0] is None else _stack([xp.matrix_transpose(a) for a in W_hr], xp=xp)
    if D == 1:  # time-major arrays (T, B, F)
        X, state = x, tuple(s[0, ...] for s in state0)
        W_proj = None if W_proj is None else W_proj[0, ...]
    else:  # direction-major arrays (2, T, B, F): each direction's block stays contiguous
        X, state = xp.stack([x, reverse_time(x, lengths, xp=xp)]), tuple(state0)
    # the input projection of every step in one (batched) matrix product
    xw = xp.reshape(X, (*X.shape[:-3], T * B, I)) @ w.W_in
    if w.b_in is not None:
        # in place: xw is this function's own fresh array (the standard allows in-place
        # operators on such an array; a library without mutation rebinds the name instead),
        # which saves a second (T, B, G*H) array: at the large shapes that is fresh memory the
        # operating system zeroes on every call (page faults: 10-17% of a training step there)
        xw += w.b_in
    xw = xp.reshape(xw, (*X.shape[:-1], xw.shape[-1]))
    steps = [xw[t, ...] for t in range(T)] if D == 1 else [xw[:, t, ...] for t in range(T)]
    outs, state, caches, prev, full = _scan(cell, w, steps, state, lengths, keep, W_proj, noise,
                                            xp=xp)
    out = _over_time(outs, D, xp=xp)
    if D == 1:
        out, state = out[0], tuple(s[None, ...] for s in state)
    else:
        out = xp.concat([out[0], reverse_time(out[1], lengths, xp=xp)], axis=-1)
    if not keep:
        return out, state, None
    return out, state, LayerCache(cell, ps, w, X, caches, _over_time(prev, D, xp=xp), lengths,
                                  _over_time(full, D, xp=xp) if full else None, noise)


def layer_backward(cache, d_out, d_state, *, xp):
    """BPTT for one layer (all its directions).

    Parameters
    ----------
    cache : LayerCache
        From :func:`layer_forward`.
    d_out : array (T, B, D*n)
        Gradient of the loss with respect to ``out``.
    d_state : tuple of arrays (D, B, n)
        Gradient with respect to the final state (zeros if unused).

    Returns
    -------
    dx : array (T, B, I)
    dstate0 : tuple of arrays (D, B, n)
    grads : list of D dicts
        ``weight_ih``, ``weight_hh``, and ``bias_ih``, ``bias_hh`` when the cell has biases,
        ``weight_hr`` with a projection, for each direction.
    """
    c = cache
    D = len(c.ps)
    T, B, I = c.x.shape[-3:]
    n = d_out.shape[-1] // D
    if D == 1:
        ds = tuple(s[0, ...] for s in d_state)
        d_steps = [d_out[t, ...] for t in range(T)]
    else:
        d_out = xp.stack([d_out[..., :n], reverse_time(d_out[..., n:], c.lengths, xp=xp)])
        ds = tuple(d_state)
        d_steps = [d_out[:, t, ...] for t in range(T)]
    W_hr = [p.get("weight_hr") for p in c.ps]
    W_hr = None if W_hr[0] is None else (W_hr[0] if D == 1 else _stack(W_hr, xp=xp))
    dxws, dghs, dstate0, dhs = _scan_backward(c.cell, c.weights, c.steps, d_steps, ds,
                                              c.lengths, W_hr, c.noise, xp=xp)
    if D == 1:
        dstate0 = tuple(s[None, ...] for s in dstate0)
    dxw = _over_time(dxws, D, xp=xp)
    dgh = dxw if dghs is None else _over_time(dghs, D, xp=xp)
    dh = _over_time(dhs, D, xp=xp) if dhs else None
    X = [c.x] if D == 1 else [c.x[d, ...] for d in range(D)]

    def part(a, d):  # direction d's (T, B, F) array as (T*B, F)
        return xp.reshape(a[d], (T * B, a[d].shape[-1]))

    dx, grads = None, []
    for d, p in enumerate(c.ps):
        dxw2 = part(dxw, d)
        dgh2 = dxw2 if dgh is dxw else part(dgh, d)
        # weight gradients summed over all steps, each in one large product
        g = {"weight_ih": xp.matrix_transpose(dxw2) @ part(X, d),
             "weight_hh": xp.matrix_transpose(dgh2) @ part(c.h_prev, d)}
        if W_hr is not None:  # dW_hr = sum_t dh_t^T h_full_t
            g["weight_hr"] = xp.matrix_transpose(part(dh, d)) @ part(c.h_full, d)
        if p.get("bias_ih") is not None:
            g["bias_ih"] = xp.sum(dxw2, axis=0)
            g["bias_hh"] = g["bias_ih"] if dgh is dxw else xp.sum(dgh2, axis=0)
        grads.append(g)
        dx_d = xp.reshape(dxw2 @ p["weight_ih"], (T, B, I))
        if d == 1:
            dx_d = reverse_time(dx_d, c.lengths, xp=xp)
        dx = dx_d if dx is None else dx + dx_d
    return dx, dstate0, grads
