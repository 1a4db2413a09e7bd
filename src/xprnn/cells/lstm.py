r"""Long short-term memory (``torch.nn.LSTM``), gate order ``i, f, g, o``.

.. math::

    i, f, g, o &= \sigma, \sigma, \tanh, \sigma \;\text{of}\; (x W_{ih}^T + b_{ih}
                  + h_{prev} W_{hh}^T + b_{hh}) \\
    c &= f \odot c_{prev} + i \odot g, \qquad h = o \odot \tanh(c)

With ``proj_size = P`` (``torch.nn.LSTM(proj_size=P)``) the loop multiplies the new ``h`` by
``W_hr^T`` ``(H, P)`` after each step, so the state ``h`` and the output have P entries and
``weight_hh`` is ``(4H, P)``; the pointwise maths is the same.

One ``tanh`` covers all four gates: ``sigmoid(u) = (tanh(u / 2) + 1) / 2`` and the halving is
folded into the ``i, f, o`` rows of the weights once per call (:func:`prepare`), so nothing can
overflow (no ``exp``) and the step body stays a handful of array operations.
"""

from __future__ import annotations

from .base import Cell, Weights, const, register, row_scale

__all__ = ["LSTM"]


def prepare(p, *, xp):
    W_ih, W_hh, b_ih, b_hh = p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]
    # i, f, o rows halved: t = tanh(u) then gives sigmoid = t/2 + 1/2 for them and g = tanh for g
    scale = row_scale(W_hh, (0.5, 0.5, 1.0, 0.5), xp=xp)
    b = None if b_ih is None else (b_ih + b_hh) * scale
    one, half, four = (const(v, W_hh, xp=xp) for v in (1.0, 0.5, 4.0))
    return Weights(xp.matrix_transpose(W_ih * scale[:, None]), b,
                   xp.matrix_transpose(W_hh * scale[:, None]), None, W_hh,
                   (half,), (one, half, four))


def forward(xw, gh, h_prev, c_prev, half, *, xp):
    H = c_prev.shape[-1]  # (h_prev is narrower with a projection)
    t = xp.tanh(xw + gh)
    a = t * half + half  # i, f, o as sigmoids (the g block of a is unused: g = t there)
    c = a[..., H : 2 * H] * c_prev + a[..., :H] * t[..., 2 * H : 3 * H]
    tanh_c = xp.tanh(c)
    h = a[..., 3 * H :] * tanh_c
    return h, c, t, c_prev, tanh_c  # new state (h, c), cache (t, c_prev, tanh_c)


def backward(dh, dc, t, c_prev, tanh_c, one, half, four, *, xp):
    H = dh.shape[-1]
    a = t * half + half  # recomputed: caching only t halves the memory BPTT holds
    i, f, g, o = a[..., :H], a[..., H : 2 * H], t[..., 2 * H : 3 * H], a[..., 3 * H :]
    do = dh * tanh_c
    dc = dc + dh * o * (one - tanh_c * tanh_c)  # backprop through h = o * tanh(c)
    # Backprop through c = f * c_prev + i * g, then through all four gates at once with
    # a (1 - a): for i, f, o that is sigmoid'; in the g block a = (g + 1) / 2, so
    # tanh' = 1 - g^2 = 4 a (1 - a) and dg gets the factor 4.
    da = xp.concat([dc * g, dc * c_prev, dc * i * four, do], axis=-1)
    dgates = da * a * (one - a)
    return dgates, dgates, None, dc * f


LSTM = register(Cell("lstm", 4, ("h", "c"), prepare, forward, backward, projectable=True))
