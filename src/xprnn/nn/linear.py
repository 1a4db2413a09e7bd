"""``Linear``: the output head ``y = x W^T + b`` on the last axis, forward beside backward."""

from __future__ import annotations

import math
import weakref
from typing import NamedTuple

import numpy as np

from ..backend import check_float, namespace
from . import shapes
from .inputs import check_cache, check_grad
from .module import Module

__all__ = ["Linear", "LinearCache", "linear", "linear_backward"]


class LinearCache(NamedTuple):
    """What :meth:`Linear.backward` needs from :meth:`Linear.forward`, and what it checks the
    cache and the gradient against: the layer that made it and the shape of ``y``."""

    xp: object
    x: object  # the input (..., in_features)
    owner: object  # weak reference to the layer whose forward made the cache
    out_shape: tuple  # of y


def linear(x, W, b, *, xp):
    """``y = x @ W.T + b`` on the last axis: x ``(..., in)``, W ``(out, in)`` -> ``(..., out)``."""
    y = x @ xp.matrix_transpose(W)
    return y if b is None else y + b


def linear_backward(dy, x, W, has_bias, *, xp):
    """Gradients of :func:`linear`: ``(dx, dW, db)``, weights summed over all leading axes."""
    dx = dy @ W
    dy2 = xp.reshape(dy, (-1, dy.shape[-1]))
    x2 = xp.reshape(x, (-1, x.shape[-1]))
    dW = xp.matrix_transpose(dy2) @ x2
    return dx, dW, (xp.sum(dy2, axis=0) if has_bias else None)


class Linear(Module):
    """Affine map ``y = x W^T + b`` applied to the last axis of any input (``torch.nn.Linear``).

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    dtype, device, xp, seed
        As for :class:`xprnn.RNN`. Initialisation as PyTorch's: ``U(-1/sqrt(in), 1/sqrt(in))``.
    """

    def __init__(self, in_features, out_features, bias=True, *, dtype=None, device=None,
                 xp=None, seed=None):
        self.in_features, self.out_features = int(in_features), int(out_features)
        if self.in_features < 1 or self.out_features < 1:
            raise ValueError(
                f"in_features and out_features must be positive, got {in_features}, {out_features}"
            )
        rng = np.random.default_rng(seed)
        k = 1.0 / math.sqrt(self.in_features)
        params = {"weight": rng.uniform(-k, k, (self.out_features, self.in_features))}
        if bias:
            params["bias"] = rng.uniform(-k, k, (self.out_features,))
        config = {"in_features": self.in_features, "out_features": self.out_features,
                  "bias": bool(bias)}
        self._setup(params, config=config, xp=xp, device=device, dtype=dtype)

    @classmethod
    def param_shapes(cls, config):
        a = shapes.arguments(cls.__init__, config)
        return shapes.linear_shapes("", shapes.size(a, "in_features"),
                                    shapes.size(a, "out_features"), shapes.flag(a, "bias"))

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={'bias' in self.params}"

    def forward(self, x):
        """``y, cache``: y of shape ``(..., out_features)``, cache a :class:`LinearCache`."""
        W, b = self.params["weight"], self.params.get("bias")
        xp = namespace(x, W, names=["x", "Linear weight"])
        check_float(x, "x", xp, self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"x has shape {tuple(x.shape)}; its last axis must be in_features="
                f"{self.in_features}"
            )
        y = linear(x, W, b, xp=xp)
        return y, LinearCache(xp, x, weakref.ref(self), tuple(y.shape))

    def backward(self, cache, dy):
        """``dx, grads`` for the upstream gradient ``dy`` of shape ``(..., out_features)``.

        Raises
        ------
        TypeError
            For a cache that is not a :class:`LinearCache` (e.g. None).
        ValueError
            For a cache made by another layer, or a ``dy`` whose shape is not that of ``y``.
        """
        check_cache(self, cache, LinearCache, keep=False)
        check_grad(dy, cache.out_shape, "dy", of="y")
        xp, x = cache.xp, cache.x
        W = self.params["weight"]
        dx, dW, db = linear_backward(dy, x, W, "bias" in self.params, xp=xp)
        grads = {"weight": dW}
        if db is not None:
            grads["bias"] = db
        return dx, grads

    def __call__(self, x):
        return self.forward(x)[0]
