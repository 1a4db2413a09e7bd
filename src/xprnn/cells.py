r"""The three cells as pure functions: one time step forward, right beside its backward.

Every cell follows one contract, so the time loop and BPTT (:mod:`xprnn.recurrent`) are written
once for all of them. Weights use PyTorch's layout: ``W_ih`` is ``(G*H, I)``, ``W_hh`` is
``(G*H, H)``, gate blocks stacked along the first axis (LSTM ``i, f, g, o``; GRU ``r, z, n``).

The input projection ``xw_t = x_t @ W_ih.T + b`` of *all* time steps is computed before the loop
in one matrix product, so a step only adds the recurrent product:

- ``prepare(W_ih, W_hh, b_ih, b_hh, *, xp) -> (W_in, b_in, stepw)``: the input-projection matrix
  ``(I, G*H)`` and bias, and whatever the step needs, computed once per call.
- ``step(xw_t, state, stepw, *, xp) -> (state, cache)``: ``state`` is a tuple ``(h,)`` or
  ``(h, c)``; its first entry is the output.
- ``step_backward(dstate, cache, W_hh, *, xp) -> (dxw_t, dgh_t, dstate_prev)``: ``dxw_t`` is the
  gradient of the input projection, ``dgh_t`` that of the recurrent product ``h_prev @ W_hh.T``
  (they differ only for the GRU). The weight gradients are *not* formed here: the loop stacks
  ``dxw_t`` and ``dgh_t`` and forms them in one large product after the last step.

Shapes: ``B`` batch, ``H`` hidden size, ``G`` number of gate blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

__all__ = ["Cell", "CELLS", "sigmoid", "sigmoid_of_negated"]

# exp(88.7) is the largest float32; capping the exponent keeps exp finite (no overflow warnings)
# and changes sigmoid by less than 2e-35 in absolute value.
_CAP = 80.0


def sigmoid(x, *, xp):
    """Logistic function ``1 / (1 + exp(-x))``, overflow-free."""
    return sigmoid_of_negated(-x, xp=xp)


def sigmoid_of_negated(u, *, xp):
    """``sigmoid(-u) = 1 / (1 + exp(u))``. The LSTM and GRU negate their gate rows once per
    call in ``prepare``, so the step gets ``u = -pre_activation`` straight from the product
    and saves one pass per step."""
    return 1.0 / (1.0 + xp.exp(xp.minimum(u, _CAP)))


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
    return xp.matrix_transpose(W_ih), _combined_bias(b_ih, b_hh), xp.matrix_transpose(W_hh)


def rnn_tanh_step(xw_t, state, W_hh_T, *, xp):
    (h_prev,) = state
    h = xp.tanh(xw_t + h_prev @ W_hh_T)
    return (h,), h


def rnn_tanh_step_backward(dstate, h, W_hh, *, xp):
    (dh,) = dstate
    dz = dh * (1.0 - h * h)  # backprop through tanh: tanh' = 1 - tanh^2
    return dz, dz, (dz @ W_hh,)


def rnn_relu_step(xw_t, state, W_hh_T, *, xp):
    (h_prev,) = state
    h = xp.maximum(xw_t + h_prev @ W_hh_T, 0.0)
    return (h,), h


def rnn_relu_step_backward(dstate, h, W_hh, *, xp):
    (dh,) = dstate
    dz = xp.where(h > 0.0, dh, 0.0)  # relu' = 1 where the output is positive
    return dz, dz, (dz @ W_hh,)


# --------------------------------------------------------------------------------------------
# LSTM:  i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of (x W_ih^T + b_ih + h_prev W_hh^T + b_hh)
#        c = f * c_prev + i * g ;  h = o * tanh(c)
# --------------------------------------------------------------------------------------------
def _lstm_prepare(W_ih, W_hh, b_ih, b_hh, *, xp):
    # Rows scaled once per call: -1 for i, f, o (the step then gets -pre straight from the
    # product) and -2 for g, because tanh(x) = 2 sigmoid(2x) - 1 lets one sigmoid pass cover all
    # four gates (exp is about twice as fast as tanh on CPUs without a vector tanh).
    scale = _row_scale(W_hh, (-1, -1, -2, -1), xp=xp)
    return _scaled(W_ih, W_hh, _combined_bias(b_ih, b_hh), scale, xp=xp)


def lstm_step(xw_t, state, W_hh_T, *, xp):
    h_prev, c_prev = state
    H = h_prev.shape[-1]
    a = sigmoid_of_negated(xw_t + h_prev @ W_hh_T, xp=xp)  # i, f, sigmoid(2 g_pre), o
    i, f, o = a[:, :H], a[:, H : 2 * H], a[:, 3 * H :]
    g = 2.0 * a[:, 2 * H : 3 * H] - 1.0  # = tanh(g_pre)
    c = f * c_prev + i * g
    tanh_c = xp.tanh(c)
    h = o * tanh_c
    return (h, c), (a, g, c_prev, tanh_c)


def lstm_step_backward(dstate, cache, W_hh, *, xp):
    dh, dc = dstate
    a, g, c_prev, tanh_c = cache
    H = dh.shape[-1]
    i, f, o = a[:, :H], a[:, H : 2 * H], a[:, 3 * H :]
    do = dh * tanh_c
    dc = dc + dh * o * (1.0 - tanh_c * tanh_c)  # backprop through h = o * tanh(c)
    # backprop through c = f * c_prev + i * g into i, f, s = sigmoid(2 g_pre) (dg/ds = 2) and o,
    # then through all four sigmoids at once: d pre = d a * a (1 - a), times 2 more for g's 2x.
    da = xp.concat([dc * g, dc * c_prev, 4.0 * dc * i, do], axis=-1)
    dgates = da * a * (1.0 - a)
    return dgates, dgates, (dgates @ W_hh, dc * f)


# --------------------------------------------------------------------------------------------
# GRU (cuDNN/PyTorch "reset after"): gi = x W_ih^T + b_ih,  gh = h_prev W_hh^T + b_hh
#        r = sigmoid(gi_r + gh_r) ; z = sigmoid(gi_z + gh_z) ; n = tanh(gi_n + r * gh_n)
#        h = (1 - z) * n + z * h_prev
# --------------------------------------------------------------------------------------------
def _gru_prepare(W_ih, W_hh, b_ih, b_hh, *, xp):
    # r and z rows negated once per call, so the step gets -pre for the sigmoids straight from
    # the products; b_hh stays inside the step: the reset gate multiplies gh_n *with* its bias.
    scale = _row_scale(W_hh, (-1, -1, 1), xp=xp)
    W_in, b_in, W_hh_T = _scaled(W_ih, W_hh, b_ih, scale, xp=xp)
    return W_in, b_in, (W_hh_T, None if b_hh is None else b_hh * scale)


def gru_step(xw_t, state, stepw, *, xp):
    (h_prev,) = state
    W_hh_T, b_hh = stepw
    H = h_prev.shape[-1]
    gh = h_prev @ W_hh_T
    if b_hh is not None:
        gh = gh + b_hh
    rz = sigmoid_of_negated(xw_t[:, : 2 * H] + gh[:, : 2 * H], xp=xp)
    r, z = rz[:, :H], rz[:, H:]
    gh_n = gh[:, 2 * H :]
    n = xp.tanh(xw_t[:, 2 * H :] + r * gh_n)
    h = n + z * (h_prev - n)
    return (h,), (r, z, n, gh_n, h_prev)


def gru_step_backward(dstate, cache, W_hh, *, xp):
    (dh,) = dstate
    r, z, n, gh_n, h_prev = cache
    dn_pre = dh * (1.0 - z) * (1.0 - n * n)  # through h = (1-z) n + z h_prev, then tanh
    dr_pre = dn_pre * gh_n * r * (1.0 - r)
    dz_pre = dh * (h_prev - n) * z * (1.0 - z)
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
