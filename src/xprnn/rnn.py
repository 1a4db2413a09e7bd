"""``RNN``, ``LSTM`` and ``GRU`` layers: PyTorch's constructor, parameters and semantics.

The classes are thin shells: they hold the parameters (``weight_ih_l0``, ``weight_hh_l0``,
``bias_ih_l0``, ``bias_hh_l0``, ``..._reverse``), check the input, and stack layers and directions
over :func:`xprnn.recurrent.direction_forward` / :func:`~xprnn.recurrent.direction_backward`.
"""

from __future__ import annotations

import math

import numpy as np

from ._backend import check_float, namespace, to_numpy
from ._module import Module
from ._random import Generator
from .cells import CELLS
from .dropout import _check_p, dropout, dropout_backward
from .recurrent import direction_backward, direction_forward, reverse_index, step_masks

__all__ = ["RNN", "LSTM", "GRU"]


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class _RNNBase(Module):
    _cell = "rnn_tanh"

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        *,
        dtype=None,
        device=None,
        xp=None,
        seed=None,
    ):
        self.input_size = _positive_int(input_size, "input_size")
        self.hidden_size = _positive_int(hidden_size, "hidden_size")
        self.num_layers = _positive_int(num_layers, "num_layers")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        self.dropout = _check_p(dropout)
        self._rng = Generator(seed)  # dropout masks between stacked layers
        self.cell = CELLS[self._cell]
        H, G = self.hidden_size, self.cell.gates
        # PyTorch's default initialisation: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)),
        # drawn with NumPy (seeded) and then moved to the target backend.
        rng = np.random.default_rng(seed)
        k = 1.0 / math.sqrt(H)
        params = {}
        for name, shape in self._param_shapes(G):
            params[name] = rng.uniform(-k, k, size=shape)
        self._setup(params, xp=xp, device=device, dtype=dtype)

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    def _suffixes(self):
        return ("", "_reverse")[: self.num_directions]

    def _param_shapes(self, G):
        H = self.hidden_size
        for layer in range(self.num_layers):
            width = self.input_size if layer == 0 else H * self.num_directions
            for sfx in self._suffixes():
                yield f"weight_ih_l{layer}{sfx}", (G * H, width)
                yield f"weight_hh_l{layer}{sfx}", (G * H, H)
                if self.bias:
                    yield f"bias_ih_l{layer}{sfx}", (G * H,)
                    yield f"bias_hh_l{layer}{sfx}", (G * H,)

    def _direction_params(self, layer, sfx):
        p = self.params
        return {
            "W_ih": p[f"weight_ih_l{layer}{sfx}"],
            "W_hh": p[f"weight_hh_l{layer}{sfx}"],
            "b_ih": p.get(f"bias_ih_l{layer}{sfx}"),
            "b_hh": p.get(f"bias_hh_l{layer}{sfx}"),
        }

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for flag in ("batch_first", "bidirectional"):
            if getattr(self, flag):
                s += f", {flag}=True"
        if not self.bias:
            s += ", bias=False"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s

    # -- input checks -----------------------------------------------------------------------
    def _check(self, x, h0, lengths):
        states = () if h0 is None else (h0 if isinstance(h0, tuple) else (h0,))
        if len(states) not in (0, self.cell.num_states):
            raise TypeError(
                f"h0 must be {'a pair (h0, c0)' if self.cell.num_states == 2 else 'one array'}, "
                f"got a tuple of {len(states)}"
            )
        names = ["x"] + (["h0", "c0"] if len(states) == 2 else ["h0"])[: len(states)]
        names.append(f"{type(self).__name__} parameters")
        anyp = next(iter(self.params.values()))
        xp = namespace(x, *states, anyp, names=names)
        check_float(x, "x", xp, self.dtype)
        if x.ndim not in (2, 3):
            raise ValueError(f"x must have 2 (unbatched) or 3 dimensions, got shape {x.shape}")
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"x has {x.shape[-1]} features in its last axis, expected input_size="
                f"{self.input_size}"
            )
        unbatched = x.ndim == 2
        if unbatched:
            x = x[:, None, :]
        elif self.batch_first:
            x = xp.permute_dims(x, (1, 0, 2))
        T, B = x.shape[0], x.shape[1]
        if T < 1:
            raise ValueError("x must have at least one time step")
        LD, H = self.num_layers * self.num_directions, self.hidden_size
        expected = (LD, H) if unbatched else (LD, B, H)
        init = []
        for name, s in zip(names[1:], states):
            check_float(s, name, xp, self.dtype)
            if tuple(s.shape) != expected:
                raise ValueError(f"{name} has shape {tuple(s.shape)}, expected {expected}")
            init.append(s[:, None, :] if unbatched else s)
        if not init:
            zeros = xp.zeros((LD, B, H), dtype=self.dtype, device=self.device)
            init = [zeros] * self.cell.num_states
        if lengths is not None:
            lengths = self._check_lengths(lengths, T, B, xp)
        return xp, x, init, lengths, unbatched

    def _check_lengths(self, lengths, T, B, xp):
        n = np.asarray(to_numpy(lengths))
        if n.ndim != 1 or n.shape[0] != B:
            raise ValueError(f"lengths must hold one int per batch row ({B}), got shape {n.shape}")
        if not np.issubdtype(n.dtype, np.integer):
            raise TypeError(f"lengths must be integers, got dtype {n.dtype}")
        if n.min() < 1 or n.max() > T:
            raise ValueError(
                f"lengths must lie in [1, {T}] (the number of time steps), got values "
                f"{int(n.min())}..{int(n.max())}"
            )
        return xp.asarray(n.astype(np.int64), device=self.device)

    # -- forward / backward -----------------------------------------------------------------
    def forward(self, x, h0=None, lengths=None, *, keep=True):
        """Run the layer and keep what backward needs.

        Parameters
        ----------
        x : array (T, B, input_size), (B, T, input_size) if ``batch_first``, or (T, input_size)
        h0 : array (num_layers * num_directions, B, hidden_size), optional
            Initial state (zeros if omitted); for the LSTM a pair ``(h0, c0)``. Unbatched input
            takes ``(num_layers * num_directions, hidden_size)``.
        lengths : sequence of int (B,), optional
            Valid steps per row. Padded steps leave the state untouched and output zeros; the
            reverse direction starts at each row's last valid step.
        keep : bool
            Keep the cache for :meth:`backward`; ``False`` (what ``layer(x)`` does) saves the
            memory and time when only the outputs are wanted.

        Returns
        -------
        out : array (T, B, num_directions * hidden_size) (batch-first/unbatched like ``x``)
        h_n : array (num_layers * num_directions, B, hidden_size); LSTM: pair ``(h_n, c_n)``
        cache : object to pass to :meth:`backward` (None when not ``keep``)
        """
        xp, x, init, lengths, unbatched = self._check(x, h0, lengths)
        T = x.shape[0]
        step_mask = step_masks(lengths, T, xp=xp)
        rev = reverse_index(lengths, T, xp=xp)
        D, ns = self.num_directions, self.cell.num_states
        finals = [[] for _ in range(ns)]
        caches, masks = [], []
        inp = x
        for layer in range(self.num_layers):
            if layer > 0:
                # dropout on the outputs of every layer but the last, as torch.nn does
                inp, m = dropout(inp, self.dropout, self._rng, xp=xp, training=self.training)
                masks.append(m)
            outs = []
            for d, sfx in enumerate(self._suffixes()):
                k = layer * D + d
                state0 = tuple(s[k, ...] for s in init)
                p = self._direction_params(layer, sfx)
                out, state, c = direction_forward(
                    self.cell, p, inp, state0, step_mask, rev, d == 1, keep, xp=xp
                )
                outs.append(out)
                caches.append(c)
                for i in range(ns):
                    finals[i].append(state[i])
            inp = outs[0] if D == 1 else xp.concat(outs, axis=-1)
        h_n = [xp.stack(f) for f in finals]
        out = inp
        if unbatched:
            out, h_n = out[:, 0, :], [h[:, 0, :] for h in h_n]
        elif self.batch_first:
            out = xp.permute_dims(out, (1, 0, 2))
        h_n = tuple(h_n) if ns == 2 else h_n[0]
        return out, h_n, ((xp, caches, masks, unbatched, x.shape) if keep else None)

    def backward(self, cache, d_out, d_h_n=None):
        """Backpropagation through time over the whole sequence.

        Parameters
        ----------
        cache : from :meth:`forward`
        d_out : array shaped like ``out`` (or None)
        d_h_n : array shaped like ``h_n`` (LSTM: pair, either entry may be None), optional

        Returns
        -------
        dx : array shaped like ``x``
        dh0 : array shaped like ``h0`` (LSTM: pair ``(dh0, dc0)``)
        grads : dict with the keys of :meth:`state_dict`
        """
        xp, caches, masks, unbatched, (T, B, _) = cache
        D, ns, H = self.num_directions, self.cell.num_states, self.hidden_size
        LD = self.num_layers * D
        zeros = xp.zeros((LD, B, H), dtype=self.dtype, device=self.device)
        if isinstance(d_h_n, tuple):
            d_final = list(d_h_n)
        else:
            d_final = [d_h_n] * (ns if d_h_n is None else 1)
        d_final = [zeros if d is None else (d[:, None, :] if unbatched else d) for d in d_final]
        if d_out is None:
            d_out = xp.zeros((T, B, D * H), dtype=self.dtype, device=self.device)
        elif unbatched:
            d_out = d_out[:, None, :]
        elif self.batch_first:
            d_out = xp.permute_dims(d_out, (1, 0, 2))
        grads, dstate0 = {}, [[None] * LD for _ in range(ns)]
        for layer in range(self.num_layers - 1, -1, -1):
            d_in = None
            for d, sfx in enumerate(self._suffixes()):
                k = layer * D + d
                dx, ds0, g = direction_backward(
                    caches[k],
                    d_out[..., d * H : (d + 1) * H],
                    tuple(s[k, ...] for s in d_final),
                    xp=xp,
                )
                d_in = dx if d_in is None else d_in + dx
                for i in range(ns):
                    dstate0[i][k] = ds0[i]
                for ours, theirs in (("W_ih", "weight_ih"), ("W_hh", "weight_hh"),
                                     ("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
                    if g[ours] is not None:
                        grads[f"{theirs}_l{layer}{sfx}"] = g[ours]
            d_out = d_in if layer == 0 else dropout_backward(d_in, masks[layer - 1])
        dh0 = [xp.stack(s) for s in dstate0]
        dx = d_out
        if unbatched:
            dx, dh0 = dx[:, 0, :], [h[:, 0, :] for h in dh0]
        elif self.batch_first:
            dx = xp.permute_dims(dx, (1, 0, 2))
        dh0 = tuple(dh0) if ns == 2 else dh0[0]
        return dx, dh0, {k: grads[k] for k in self.params}

    def __call__(self, x, h0=None, lengths=None):
        """``out, h_n = layer(x, h0=None, lengths=None)``; see :meth:`forward`."""
        out, h_n, _ = self.forward(x, h0, lengths, keep=False)
        return out, h_n


class RNN(_RNNBase):
    r"""Elman RNN: :math:`h_t = \tanh(x_t W_{ih}^T + b_{ih} + h_{t-1} W_{hh}^T + b_{hh})`.

    Same arguments as ``torch.nn.RNN`` (``input_size, hidden_size, num_layers=1,
    nonlinearity="tanh", bias=True, batch_first=False, dropout=0.0, bidirectional=False``;
    ``dropout`` acts between stacked layers in training mode) plus ``dtype``
    (float32 default, or float64), ``xp``/``device`` (backend; NumPy on the CPU by default) and
    ``seed`` for the initialisation.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", *args, **kw):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self._cell = f"rnn_{nonlinearity}"
        super().__init__(input_size, hidden_size, num_layers, *args, **kw)


class LSTM(_RNNBase):
    r"""Long short-term memory, gate order ``i, f, g, o`` as in ``torch.nn.LSTM``.

    :math:`c_t = f \odot c_{t-1} + i \odot g`, :math:`h_t = o \odot \tanh(c_t)`. Arguments as
    :class:`RNN` without ``nonlinearity``; states are pairs ``(h, c)``.
    """

    _cell = "lstm"


class GRU(_RNNBase):
    r"""Gated recurrent unit, gate order ``r, z, n``, reset applied after the recurrent product
    (the cuDNN/PyTorch convention): :math:`n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h +
    b_{hn}))`, :math:`h_t = (1 - z) \odot n + z \odot h_{t-1}`. Arguments as :class:`RNN`.
    """

    _cell = "gru"
