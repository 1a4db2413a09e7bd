"""Inverted dropout: forward and backward as pure functions, and a thin :class:`Dropout` layer.

In training each element is kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``, so
the expected output equals the input and evaluation needs no rescaling (PyTorch's convention)::

    mask = (u >= p) / (1 - p),   u ~ U[0, 1)
    y    = x * mask
    dx   = dy * mask
"""

from __future__ import annotations

import numbers

from ..backend import Generator, check_float, device_of, namespace
from .module import Module

__all__ = ["dropout", "dropout_backward", "dropout_mask", "check_p", "Dropout"]


def check_p(p):
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
        raise ValueError(f"dropout probability p must be a number in [0, 1), got {p!r}")
    return float(p)


def dropout(x, p, rng, *, xp, training=True):
    """Inverted dropout of ``x``.

    Parameters
    ----------
    x : array, any shape, floating
    p : float in [0, 1)
        Probability of dropping an element.
    rng : Generator
        Source of the uniform draws (:class:`xprnn._random.Generator`).
    xp : namespace
        Namespace of ``x``.
    training : bool
        ``False`` (evaluation) turns dropout off.

    Returns
    -------
    y : array, shape of ``x``
        ``x * mask``; ``x`` itself when ``p == 0`` or not ``training``.
    mask : array, shape of ``x``, or None
        ``1 / (1 - p)`` where kept, ``0`` where dropped; ``None`` when dropout is off.
    """
    p = check_p(p)
    if not training or p == 0.0:
        return x, None
    mask = dropout_mask(tuple(x.shape), p, rng, x.dtype, device_of(x), xp=xp)
    return x * mask, mask


def dropout_mask(shape, p, rng, dtype, device, *, xp):
    """``1 / (1 - p)`` with probability ``1 - p``, else ``0``: an inverted-dropout mask."""
    u = rng.uniform(shape, dtype, xp=xp, device=device)
    # keep with probability 1 - p; the scale is folded into the mask so backward is one product
    return xp.astype(u >= p, dtype) * (1.0 / (1.0 - p))


def dropout_backward(dy, mask):
    """Gradient of :func:`dropout`: ``dx = dy * mask`` (``dy`` itself when ``mask`` is None)."""
    return dy if mask is None else dy * mask


class Dropout(Module):
    """Inverted dropout layer, on in training mode and off after :meth:`eval`.

    Parameters
    ----------
    p : float in [0, 1), default 0.5
        Probability of dropping an element.
    seed : int, optional
        Seed of the mask stream (:class:`xprnn._random.Generator`); ``None`` for a fresh one.

    Notes
    -----
    ``y, cache = layer.forward(x)`` then ``dx = layer.backward(cache, dy)``; ``layer(x)`` returns
    ``y`` only. It has no parameters; it follows the backend of whatever ``x`` it is given.
    """

    def __init__(self, p=0.5, *, seed=None):
        self.p = check_p(p)
        self.rng = Generator(seed)
        self.seed = self.rng.seed
        self._setup({}, config={"p": self.p})

    @classmethod
    def param_shapes(cls, config):
        return {}

    def forward(self, x):
        """``(y, cache)`` with ``y`` of the shape of ``x``; ``cache`` is the mask (or None)."""
        xp = namespace(x, names=["x"])
        check_float(x, "x", xp)
        return dropout(x, self.p, self.rng, xp=xp, training=self.training)

    def backward(self, cache, dy):
        """``(dx, {})`` from the ``cache`` that :meth:`forward` returned: the input gradient
        (shape of ``dy``) and the parameter gradients (none), as every module's backward."""
        return dropout_backward(dy, cache), {}

    def __call__(self, x):
        return self.forward(x)[0]

    def extra_repr(self):
        return f"p={self.p}"
