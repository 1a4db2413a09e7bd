r"""Elman RNN cells, tanh and ReLU (``torch.nn.RNN``).

.. math::

    h = \tanh(x W_{ih}^T + b_{ih} + h_{prev} W_{hh}^T + b_{hh}) \quad (\text{or } \max(\cdot, 0))

Backward: ``dz = dh * tanh'`` with ``tanh' = 1 - h^2`` (ReLU: ``1`` where ``h > 0``); ``dz`` is
the gradient of both the input projection and the recurrent product.
"""

from __future__ import annotations

from .base import Cell, Weights, const, register

__all__ = ["RNN_TANH", "RNN_RELU", "for_nonlinearity"]


def for_nonlinearity(nonlinearity):
    """The cell name for ``torch.nn.RNN``'s ``nonlinearity`` argument (``"tanh"``/``"relu"``)."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return "rnn" if nonlinearity == "tanh" else "rnn_relu"


def prepare(p, *, xp):
    b = None if p["bias_ih"] is None else p["bias_ih"] + p["bias_hh"]
    W_hh = p["weight_hh"]
    return Weights(xp.matrix_transpose(p["weight_ih"]), b, xp.matrix_transpose(W_hh), None,
                   W_hh, (), (const(1.0, W_hh, xp=xp),))


def tanh_forward(xw, gh, h_prev, *, xp):
    h = xp.tanh(xw + gh)
    return h, h  # new state (h,), cache h


def tanh_backward(dh, h, one, *, xp):
    dz = dh * (one - h * h)  # backprop through tanh: tanh' = 1 - tanh^2
    return dz, dz, None


def relu_prepare(p, *, xp):
    return prepare(p, xp=xp)._replace(bw=())


def relu_forward(xw, gh, h_prev, *, xp):
    h = xp.maximum(xw + gh, 0.0)
    return h, h


def relu_backward(dh, h, *, xp):
    dz = xp.where(h > 0.0, dh, 0.0)  # relu' = 1 where the output is positive
    return dz, dz, None


RNN_TANH = register(Cell("rnn", 1, ("h",), prepare, tanh_forward, tanh_backward))
RNN_RELU = register(Cell("rnn_relu", 1, ("h",), relu_prepare, relu_forward, relu_backward))
