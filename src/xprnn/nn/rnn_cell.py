"""Single-step layers: ``RNNCell``, ``LSTMCell`` and ``GRUCell`` (``torch.nn.*Cell``), for loops
you write yourself (decoders, attention, sampling).

One step is the time loop of :mod:`xprnn.nn.recurrent` run for one step, so the maths and its
backward are the layers' own, not a second copy. Parameters carry PyTorch's names and shapes:
``weight_ih (G*H, I)``, ``weight_hh (G*H, H)``, ``bias_ih``, ``bias_hh (G*H,)``.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import numpy as np

from .. import cells
from ..backend import check_float, namespace
from ..cells import elman
from . import shapes
from .inputs import check_cache, check_grad, positive_int
from .module import Module
from .recurrent import layer_backward, layer_forward
from .rnn import TorchNamed

__all__ = ["RecurrentCell", "RNNCell", "LSTMCell", "GRUCell", "StepCache"]


class StepCache(NamedTuple):
    """What :meth:`RecurrentCell.backward` needs from :meth:`RecurrentCell.forward`, and what
    it checks the cache and the gradients against: the cell that made it and the shape of each
    state it returned."""

    loop: object  # the LayerCache of a one-step loop
    unbatched: bool
    owner: object = None  # weak reference to the cell whose forward made the cache
    state_shape: tuple = ()  # of each entry of the new state


class RecurrentCell(Module):
    """One time step of any registered cell.

    Parameters
    ----------
    cell : str
        A registered cell name (``"rnn"``, ``"rnn_relu"``, ``"lstm"``, ``"gru"``, ...).
    input_size, hidden_size : int
    bias : bool
    dtype, device, xp, seed : as for :class:`xprnn.RNN`.
    """

    def __init__(self, cell, input_size, hidden_size, bias=True, *, dtype=None, device=None,
                 xp=None, seed=None):
        self.cell = cells.get(cell)
        self.input_size = positive_int(input_size, "input_size")
        self.hidden_size = positive_int(hidden_size, "hidden_size")
        self.bias = bool(bias)
        shapes = self.cell.parameters(self.input_size, self.hidden_size, self.bias)
        params = self.cell.init(shapes, self.hidden_size, np.random.default_rng(seed))
        self._setup(params, config=self._config(), xp=xp, device=device, dtype=dtype)

    @classmethod
    def param_shapes(cls, config):
        a = shapes.cell_arguments(cls, RecurrentCell.__init__, config)
        return dict(cells.get(a["cell"]).parameters(
            shapes.size(a, "input_size"), shapes.size(a, "hidden_size"), shapes.flag(a, "bias")))

    def _config(self):
        return {"cell": self.cell.name, "input_size": self.input_size,
                "hidden_size": self.hidden_size, "bias": self.bias}

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if type(self) is RecurrentCell:
            s = f"{self.cell.name!r}, " + s
        return s + ("" if self.bias else ", bias=False")

    def _check(self, x, state):
        ns = self.cell.num_states
        states = () if state is None else (state if isinstance(state, tuple) else (state,))
        if len(states) not in (0, ns):
            want = {1: "one array", 2: "a pair (h, c)"}.get(ns, f"a tuple of {ns} arrays")
            raise TypeError(f"state must be {want}, got a tuple of {len(states)}")
        names = ["x", *(("h", "c") if ns <= 2 else [f"state[{i}]" for i in range(ns)])]
        anyp = self.params["weight_ih"]
        xp = namespace(x, *states, anyp, names=[*names[: 1 + len(states)], "cell parameters"])
        check_float(x, "x", xp, self.dtype)
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"x must have shape (batch, {self.input_size}) or "
                             f"({self.input_size},), got {tuple(x.shape)}")
        unbatched = x.ndim == 1
        B = 1 if unbatched else x.shape[0]
        expected = (self.hidden_size,) if unbatched else (B, self.hidden_size)
        for name, s in zip(names[1:], states):
            check_float(s, name, xp, self.dtype)
            if tuple(s.shape) != expected:
                raise ValueError(f"{name} has shape {tuple(s.shape)}, expected {expected}")
        if not states:
            states = (xp.zeros(expected, dtype=self.dtype, device=self.device),) * ns
        if unbatched:
            x, states = x[None, :], tuple(s[None, :] for s in states)
        return xp, x, states, unbatched

    def forward(self, x, state=None, *, keep=True):
        """One step.

        Parameters
        ----------
        x : array (B, input_size) or (input_size,)
        state : array (B, hidden_size), or for the LSTM a pair ``(h, c)``; zeros if omitted
        keep : bool
            Keep the cache for :meth:`backward`.

        Returns
        -------
        new_state : array (B, hidden_size), or a pair ``(h, c)``
        cache : StepCache, or None when not ``keep``
        """
        xp, x, states, unbatched = self._check(x, state)
        p = {k: self.params.get(k) for k in self.cell.parameters(1, 1)}
        _, new, c = layer_forward(self.cell, [p], x[None, ...], tuple(s[None, ...] for s in
                                                                      states), None, keep, xp=xp)
        new = tuple(s[0, ...] for s in new)
        if unbatched:
            new = tuple(s[0, :] for s in new)
        shape = tuple(new[0].shape)
        new = new if self.cell.num_states > 1 else new[0]
        return new, (StepCache(c, unbatched, weakref.ref(self), shape) if keep else None)

    def backward(self, cache, d_state):
        """Gradients of one step.

        Parameters
        ----------
        cache : StepCache from :meth:`forward`
        d_state : array shaped like the new state (LSTM: pair, either entry may be None)

        Returns
        -------
        dx : array shaped like ``x``
        d_state_prev : shaped like ``state`` (LSTM: pair ``(dh, dc)``)
        grads : dict with the keys of :meth:`state_dict`

        Raises
        ------
        TypeError
            For a cache that is not a :class:`StepCache` (``None`` from ``keep=False``).
        ValueError
            For a cache made by another cell, a ``d_state`` with the wrong number of entries or
            an entry whose shape is not that of the new state (no data is read).
        """
        check_cache(self, cache, StepCache)
        c = cache.loop
        xp = namespace(c.x, names=["cache"])
        _, B, _ = c.x.shape
        ns = self.cell.num_states
        if d_state is None:
            ds = [None] * ns
        elif isinstance(d_state, (tuple, list)):
            ds = list(d_state)
        else:
            ds = [d_state]
        if len(ds) != ns:
            want = "one array" if ns == 1 else f"a tuple of {ns} (one per state " \
                f"{self.cell.states}, each may be None)"
            raise ValueError(f"d_state must be {want}, got {len(ds)} entr"
                             f"{'y' if len(ds) == 1 else 'ies'}")
        for i, d in enumerate(ds):
            check_grad(d, cache.state_shape, f"d_state[{i}]" if ns > 1 else "d_state")
        zeros = xp.zeros((B, self.hidden_size), dtype=self.dtype, device=self.device)
        ds = tuple(zeros if d is None else (d[None, :] if cache.unbatched else d) for d in ds)
        d_out = xp.zeros((1, B, self.hidden_size), dtype=self.dtype, device=self.device)
        dx, dprev, grads = layer_backward(c, d_out, tuple(d[None, ...] for d in ds), xp=xp)
        dx, dprev, grads = dx[0, ...], tuple(d[0, ...] for d in dprev), grads[0]
        if cache.unbatched:
            dx, dprev = dx[0, :], tuple(d[0, :] for d in dprev)
        return dx, (dprev if ns > 1 else dprev[0]), {k: grads[k] for k in self.params}

    def __call__(self, x, state=None):
        """``new_state = cell(x, state)``; see :meth:`forward`."""
        return self.forward(x, state, keep=False)[0]


class RNNCell(TorchNamed, RecurrentCell):
    r"""Elman cell, :math:`h' = \tanh(x W_{ih}^T + b_{ih} + h W_{hh}^T + b_{hh})` (or ReLU):
    ``torch.nn.RNNCell(input_size, hidden_size, bias=True, nonlinearity="tanh")``."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", **kw):
        cell = elman.for_nonlinearity(nonlinearity)
        self.nonlinearity = nonlinearity
        super().__init__(cell, input_size, hidden_size, bias, **kw)


class _FixedStep(TorchNamed, RecurrentCell):
    def __init__(self, input_size, hidden_size, bias=True, **kw):
        super().__init__(self._cell, input_size, hidden_size, bias, **kw)


class LSTMCell(_FixedStep):
    """LSTM cell, ``torch.nn.LSTMCell(input_size, hidden_size, bias=True)``; state ``(h, c)``."""

    _cell = "lstm"


class GRUCell(_FixedStep):
    """GRU cell (reset after the recurrent product), ``torch.nn.GRUCell(input_size,
    hidden_size, bias=True)``."""

    _cell = "gru"
