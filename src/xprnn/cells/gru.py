r"""Gated recurrent unit (``torch.nn.GRU``), gate order ``r, z, n``, reset applied *after* the
recurrent product (the cuDNN/PyTorch convention).

.. math::

    gi &= x W_{ih}^T + b_{ih}, \qquad gh = h_{prev} W_{hh}^T + b_{hh} \\
    r &= \sigma(gi_r + gh_r), \quad z = \sigma(gi_z + gh_z), \quad
    n = \tanh(gi_n + r \odot gh_n) \\
    h &= (1 - z) \odot n + z \odot h_{prev}

As in the LSTM, ``sigmoid(u) = (tanh(u / 2) + 1) / 2`` with the halving folded into the ``r, z``
rows, so one ``tanh`` gives both gates.
"""

from __future__ import annotations

from .base import Cell, Weights, const, register, row_scale

__all__ = ["GRU"]


def prepare(p, *, xp):
    W_ih, W_hh, b_ih, b_hh = p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]
    # r, z rows halved; b_hh stays in the recurrent product because the reset gate multiplies
    # gh_n *with* its bias.
    scale = row_scale(W_hh, (0.5, 0.5, 1.0), xp=xp)
    return Weights(xp.matrix_transpose(W_ih * scale[:, None]),
                   None if b_ih is None else b_ih * scale,
                   xp.matrix_transpose(W_hh * scale[:, None]),
                   None if b_hh is None else b_hh * scale, W_hh,
                   (const(0.5, W_hh, xp=xp),), (const(1.0, W_hh, xp=xp),))


def forward(xw, gh, h_prev, half, *, xp):
    H = h_prev.shape[-1]
    rz = xp.tanh(xw[..., : 2 * H] + gh[..., : 2 * H]) * half + half
    r, z = rz[..., :H], rz[..., H:]
    r_gh_n = r * gh[..., 2 * H :]
    n = xp.tanh(xw[..., 2 * H :] + r_gh_n)
    h = n + z * (h_prev - n)
    # the cache keeps r * gh_n, an (..., H) array made here anyway, and not gh_n, a view that
    # would keep this step's whole (..., 3H) product alive until the backward
    return h, r, z, n, r_gh_n, h_prev  # new state (h,), cache (r, z, n, r_gh_n, h_prev)


def backward(dh, r, z, n, r_gh_n, h_prev, one, *, xp):
    dh_n = dh * (one - z)  # through h = (1-z) n + z h_prev: the part reaching n
    dn_pre = dh_n * (one - n * n)  # then through tanh
    dr_pre = dn_pre * r_gh_n * (one - r)  # gh_n r (1 - r): r's sigmoid' times its factor gh_n
    dz_pre = dh_n * z * (h_prev - n)  # dh (h_prev - n) times z's sigmoid' z (1 - z)
    dxw = xp.concat([dr_pre, dz_pre, dn_pre], axis=-1)
    dgh = xp.concat([dr_pre, dz_pre, dn_pre * r], axis=-1)  # r scales gh_n, so also its grad
    return dxw, dgh, dh * z


GRU = register(Cell("gru", 3, ("h",), prepare, forward, backward))
