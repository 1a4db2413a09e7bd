r"""The three cells as pure functions: one time step forward, right beside its backward.

Every cell follows one contract, so the time loop and BPTT (:mod:`xprnn.recurrent`) are written
once for all of them. Weights use PyTorch's layout: ``W_ih`` is ``(G*H, I)``, ``W_hh`` is
``(G*H, H)``, gate blocks stacked along the first axis (LSTM ``i, f, g, o``; GRU ``r, z, n``).

The input projection ``xw_t = x_t @ W_ih.T + b`` of *all* time steps is computed before the loop
in one matrix product, so a step only adds the recurrent product:

- ``prepare(W_ih, W_hh, b_ih, b_hh, *, xp) -> (W_in, b_in, fw, bw)``: the input-projection
  matrix ``(I, G*H)`` and bias, then whatever the step (``fw``) and its backward (``bw``) need,
  computed once per call, not once per step.
- ``step(xw_t, state, fw, *, xp) -> (state, cache)``: ``state`` is a tuple ``(h,)`` or
  ``(h, c)``; its first entry is the output.
- ``step_backward(dstate, cache, bw, *, xp) -> (dxw_t, dgh_t, dstate_prev)``: ``dxw_t`` is the
  gradient of the input projection, ``dgh_t`` that of the recurrent product ``h_prev @ W_hh.T``
  (they differ only for the GRU). The weight gradients are *not* formed here: the loop stacks
  ``dxw_t`` and ``dgh_t`` and forms them in one large product after the last step.

Two speed choices keep the per-step body to a handful of array operations (each one costs a
fixed call overhead of about a microsecond on the CPU, which dominates at small batches):

- ``sigmoid(x) = (tanh(x / 2) + 1) / 2``: the halving is folded into the gate rows of the
  weights once per call, so *one* ``tanh`` covers every gate of the LSTM (``i, f, o`` and ``g``)
  or both of the GRU's ``r, z``, and nothing can overflow (no ``exp``).
- Constants are 0-d arrays of the parameters' dtype, made once per call: an operation with a
  Python float costs about twice one with an array on NumPy.

Shapes: ``B`` batch, ``H`` hidden size, ``G`` number of gate blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Cell", "CELLS"]

def _const(value, like, *, xp):
    """A 0-d array of ``like``'s dtype and device."""
    return xp.asarray(value, dtype=like.dtype, device=like.device)


def _row_scale(W, blocks, *, xp):
    """Vector ``(G*H,)`` repeating each block's factor H times (``blocks``: one factor per gate)."""
    H = W.shape[0] // len(blocks)
    return xp.concat([xp.full(H, float(f), dtype=W.dtype, device=W.device) for f in blocks])


def _scaled(W_ih, W_hh, b, scale, *, xp):
    """Input matrix ``(I, G*H)``, bias and recurrent matrix ``(H, G*H)`` with rows scaled."""
    return (
        xp.matrix_transpose(W_ih * scale[:, None]),
        None if b is None else b * scale,
        xp.matrix_transpose(W_hh * scale[:, None]),
    )


def _combined_bias(b_ih, b_hh):
    if b_ih is None:
        return None
    return b_ih + b_hh


# --------------------------------------------------------------------------------------------
# Elman RNN: h = tanh(x W_ih^T + b_ih + h_prev W_hh^T + b_hh)   (or relu)
# --------------------------------------------------------------------------------------------
def _rnn_prepare(W_ih, W_hh, b_ih, b_hh, *, xp):
    fw = xp.matrix_transpose(W_hh)
    bw = (W_hh, _const(1.0, W_hh, xp=xp))
    return xp.matrix_transpose(W_ih), _combined_bias(b_ih, b_hh), fw, bw


def rnn_tanh_step(xw_t, state, W_hh_T, *, xp):
    (h_prev,) = state
    h = xp.tanh(xw_t + h_prev @ W_hh_T)
    return (h,), h


def rnn_tanh_step_backward(dstate, h, bw, *, xp):
    (dh,) = dstate
    W_hh, one = bw
    dz = dh * (one - h * h)  # backprop through tanh: tanh' = 1 - tanh^2
    return dz, dz, (dz @ W_hh,)


def rnn_relu_step(xw_t, state, W_hh_T, *, xp):
    (h_prev,) = state
    h = xp.maximum(xw_t + h_prev @ W_hh_T, 0.0)
    return (h,), h


def rnn_relu_step_backward(dstate, h, bw, *, xp):
    (dh,) = dstate
    dz = xp.where(h > 0.0, dh, 0.0)  # relu' = 1 where the output is positive
    return dz, dz, (dz @ bw[0],)


# --------------------------------------------------------------------------------------------
# LSTM:  i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of (x W_ih^T + b_ih + h_prev W_hh^T + b_hh)
#        c = f * c_prev + i * g ;  h = o * tanh(c)
# --------------------------------------------------------------------------------------------
def _lstm_prepare(W_ih, W_hh, b_ih, b_hh, *, xp):
    # i, f, o rows halved: t = tanh(u) then gives sigmoid = t/2 + 1/2 for them and g = tanh for g
    scale = _row_scale(W_hh, (0.5, 0.5, 1.0, 0.5), xp=xp)
    W_in, b_in, W_hh_T = _scaled(W_ih, W_hh, _combined_bias(b_ih, b_hh), scale, xp=xp)
    one, half, four = (_const(v, W_hh, xp=xp) for v in (1.0, 0.5, 4.0))
    return W_in, b_in, (W_hh_T, half), (W_hh, one, half, four)


def lstm_step(xw_t, state, fw, *, xp):
    h_prev, c_prev = state
    W_hh_T, half = fw
    H = h_prev.shape[-1]
    t = xp.tanh(xw_t + h_prev @ W_hh_T)
    a = t * half + half  # i, f, o as sigmoids (the g block of a is unused: g = t there)
    c = a[:, H : 2 * H] * c_prev + a[:, :H] * t[:, 2 * H : 3 * H]
    tanh_c = xp.tanh(c)
    h = a[:, 3 * H :] * tanh_c
    return (h, c), (t, c_prev, tanh_c)


def lstm_step_backward(dstate, cache, bw, *, xp):
    dh, dc = dstate
    t, c_prev, tanh_c = cache
    W_hh, one, half, four = bw
    H = dh.shape[-1]
    a = t * half + half  # recomputed: caching only t halves the memory BPTT holds
    i, f, g, o = a[:, :H], a[:, H : 2 * H], t[:, 2 * H : 3 * H], a[:, 3 * H :]
    do = dh * tanh_c
    dc = dc + dh * o * (one - tanh_c * tanh_c)  # backprop through h = o * tanh(c)
    # Backprop through c = f * c_prev + i * g, then through all four gates at once with
    # a (1 - a): for i, f, o that is sigmoid'; in the g block a = (g + 1) / 2, so
    # tanh' = 1 - g^2 = 4 a (1 - a) and dg gets the factor 4.
    da = xp.concat([dc * g, dc * c_prev, dc * i * four, do], axis=-1)
    dgates = da * a * (one - a)
    return dgates, dgates, (dgates @ W_hh, dc * f)


# --------------------------------------------------------------------------------------------
# GRU (cuDNN/PyTorch "reset after"): gi = x W_ih^T + b_ih,  gh = h_prev W_hh^T + b_hh
#        r = sigmoid(gi_r + gh_r) ; z = sigmoid(gi_z + gh_z) ; n = tanh(gi_n + r * gh_n)
#        h = (1 - z) * n + z * h_prev
# --------------------------------------------------------------------------------------------
def _gru_prepare(W_ih, W_hh, b_ih, b_hh, *, xp):
    # r, z rows halved (sigmoid = tanh(u)/2 + 1/2, one tanh for both); b_hh stays inside the
    # step because the reset gate multiplies gh_n *with* its bias.
    scale = _row_scale(W_hh, (0.5, 0.5, 1.0), xp=xp)
    W_in, b_in, W_hh_T = _scaled(W_ih, W_hh, b_ih, scale, xp=xp)
    b = None if b_hh is None else b_hh * scale
    one = _const(1.0, W_hh, xp=xp)
    return W_in, b_in, (W_hh_T, b, _const(0.5, W_hh, xp=xp)), (W_hh, one)


def gru_step(xw_t, state, fw, *, xp):
    (h_prev,) = state
    W_hh_T, b_hh, half = fw
    H = h_prev.shape[-1]
    gh = h_prev @ W_hh_T
    if b_hh is not None:
        gh = gh + b_hh
    rz = xp.tanh(xw_t[:, : 2 * H] + gh[:, : 2 * H]) * half + half
    r, z = rz[:, :H], rz[:, H:]
    gh_n = gh[:, 2 * H :]
    n = xp.tanh(xw_t[:, 2 * H :] + r * gh_n)
    h = n + z * (h_prev - n)
    return (h,), (r, z, n, gh_n, h_prev)


def gru_step_backward(dstate, cache, bw, *, xp):
    (dh,) = dstate
    r, z, n, gh_n, h_prev = cache
    W_hh, one = bw
    dn_pre = dh * (one - z) * (one - n * n)  # through h = (1-z) n + z h_prev, then tanh
    dr_pre = dn_pre * gh_n * r * (one - r)
    dz_pre = dh * (h_prev - n) * z * (one - z)
    dxw = xp.concat([dr_pre, dz_pre, dn_pre], axis=-1)
    dgh = xp.concat([dr_pre, dz_pre, dn_pre * r], axis=-1)  # r scales gh_n, so also its grad
    return dxw, dgh, (dh * z + dgh @ W_hh,)


@dataclass(frozen=True)
class Cell:
    """One recurrent cell: ``gates`` blocks of size H, ``num_states`` state arrays."""

    name: str
    gates: int
    num_states: int
    prepare: Callable
    step: Callable
    step_backward: Callable


CELLS = {
    "rnn_tanh": Cell("rnn_tanh", 1, 1, _rnn_prepare, rnn_tanh_step, rnn_tanh_step_backward),
    "rnn_relu": Cell("rnn_relu", 1, 1, _rnn_prepare, rnn_relu_step, rnn_relu_step_backward),
    "lstm": Cell("lstm", 4, 2, _lstm_prepare, lstm_step, lstm_step_backward),
    "gru": Cell("gru", 3, 1, _gru_prepare, gru_step, gru_step_backward),
}
