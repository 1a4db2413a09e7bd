"""``Recurrent``: stacked layers and directions of any registered cell over the time loop.

A thin shell: it holds the parameters (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``,
``bias_hh_l0``, ``..._reverse``, PyTorch's names), checks the input (:mod:`xprnn.nn.inputs`),
draws the recurrent noise (:mod:`xprnn.nn.noise`), and stacks layers and directions over
:func:`xprnn.nn.recurrent.layer_forward` / :func:`~xprnn.nn.recurrent.layer_backward`.
``RNN``, ``LSTM`` and ``GRU`` (:mod:`xprnn.nn.rnn`) fix the cell.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import numpy as np

from .. import cells
from ..backend import Generator
from . import shapes
from .dropout import check_p, dropout, dropout_backward
from .inputs import check_cache, check_grad, check_sequence, positive_int
from .module import Module
from .noise import make_noise
from .recurrent import layer_backward, layer_forward

__all__ = ["Recurrent", "StackCache"]


class StackCache(NamedTuple):
    """What :meth:`Recurrent.backward` needs from :meth:`Recurrent.forward`, and what it
    checks the cache and the gradients against: the layer that made it and the shapes of
    ``out`` and of each state in ``h_n`` as returned."""

    xp: object
    layers: list  # the loop's LayerCache of each layer
    dropout_masks: list  # between stacked layers (None where off)
    unbatched: bool
    shape: tuple  # (T, B, I) of the time-major input
    owner: object = None  # weak reference to the layer whose forward made the cache
    out_shape: tuple = ()
    state_shapes: tuple = ()  # of h_n's entries (h, then c for the LSTM)


class Recurrent(Module):
    """A stack of recurrent layers of any registered cell (:mod:`xprnn.cells`).

    Parameters
    ----------
    cell : str
        A registered cell name (``"rnn"``, ``"rnn_relu"``, ``"lstm"``, ``"gru"``, or your own).
    input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional
        As in ``torch.nn.RNN``; ``dropout`` acts between stacked layers in training mode.
    proj_size : int
        ``0`` (default) or, for a cell that allows it (the LSTM), the size P the output state
        ``h`` is projected to after every step (``torch.nn.LSTM(proj_size=P)``: parameters
        ``weight_hr_l{k} (P, H)``, ``weight_hh_l{k} (4H, P)``; ``h`` and the outputs have P
        entries, ``c`` keeps H).
    recurrent_dropout : float in [0, 1)
        Variational dropout on the recurrent connection (Gal & Ghahramani, 2016; Keras's
        ``recurrent_dropout``): in training, one mask per sequence and direction multiplies
        ``h_prev`` where it enters the recurrent product, at every step.
    zoneout : float, or one float per state (``(p_h, p_c)`` for the LSTM)
        Zoneout (Krueger et al., 2017): in training each unit of the state keeps its previous
        value with this probability at every step; in evaluation the state is the expected
        mix ``p * previous + (1 - p) * new``.
    dtype : float32 (default) or float64
    device, xp : optional
        Backend of the parameters (NumPy on the CPU by default).
    seed : int, optional
        Seeds the initialisation (PyTorch's ``U(-1/sqrt(H), 1/sqrt(H))``, drawn with NumPy so
        every backend starts equal) and the dropout stream.
    """

    def __init__(self, cell, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, proj_size=0, *,
                 recurrent_dropout=0.0, zoneout=0.0, dtype=None, device=None, xp=None,
                 seed=None):
        self.cell = cells.get(cell)
        self.input_size = positive_int(input_size, "input_size")
        self.hidden_size = positive_int(hidden_size, "hidden_size")
        self.proj_size = 0 if proj_size == 0 else positive_int(proj_size, "proj_size")
        if self.proj_size and not self.cell.projectable:
            raise ValueError(f"proj_size is not supported by the {self.cell.name!r} cell "
                             "(only the LSTM projects its output, as in torch)")
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size, got {proj_size} and "
                             f"{hidden_size}")
        self.num_layers = positive_int(num_layers, "num_layers")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        self.dropout = check_p(dropout)
        self.recurrent_dropout = check_p(recurrent_dropout)
        rates = zoneout if isinstance(zoneout, (tuple, list)) else (zoneout,) * len(
            self.cell.states)
        if len(rates) != len(self.cell.states):
            raise ValueError(f"zoneout must be one rate or one per state {self.cell.states}, "
                             f"got {zoneout!r}")
        self.zoneout = tuple(check_p(r) for r in rates)
        self.rng = Generator(seed)  # dropout masks between stacked layers, recurrent noise
        rng = np.random.default_rng(seed)
        params, self._names = {}, []
        for layer, sfx in self._directions():
            width = self.input_size if layer == 0 else self.output_size * self.num_directions
            shapes = self.cell.parameters(width, self.hidden_size, self.bias, self.proj_size)
            init = self.cell.init(shapes, self.hidden_size, rng)
            params.update({f"{k}_l{layer}{sfx}": v for k, v in init.items()})
            # cell name -> layer name of every parameter the cell may have, biases included
            self._names.append({k: f"{k}_l{layer}{sfx}" for k in self.cell.parameters(
                width, self.hidden_size, True, self.proj_size)})
        self._setup(params, config=self._config(), xp=xp, device=device, dtype=dtype)

    @classmethod
    def param_shapes(cls, config):
        a = shapes.cell_arguments(cls, Recurrent.__init__, config)
        return shapes.recurrent_shapes(
            "", a["cell"], shapes.size(a, "input_size"), shapes.size(a, "hidden_size"),
            shapes.size(a, "num_layers", shapes.MAX_LAYERS), shapes.flag(a, "bias"),
            shapes.flag(a, "bidirectional"), shapes.size(a, "proj_size", low=0))

    def _config(self):
        config = {"cell": self.cell.name, "input_size": self.input_size,
                  "hidden_size": self.hidden_size, "num_layers": self.num_layers,
                  "bias": self.bias, "batch_first": self.batch_first, "dropout": self.dropout,
                  "bidirectional": self.bidirectional}
        if self.proj_size:
            config["proj_size"] = self.proj_size
        if self.recurrent_dropout:
            config["recurrent_dropout"] = self.recurrent_dropout
        if any(self.zoneout):
            config["zoneout"] = list(self.zoneout)
        return config

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def output_size(self):
        """Entries of ``h`` and of each direction's output: ``proj_size`` or ``hidden_size``."""
        return self.proj_size or self.hidden_size

    @property
    def state_sizes(self):
        """Entries of each state array: ``h`` first (``output_size``), then e.g. ``c`` (H)."""
        return (self.output_size,) + (self.hidden_size,) * (self.cell.num_states - 1)

    def _directions(self):
        """``(layer, suffix)`` of every direction, in the order of ``h0``'s first axis."""
        return [(layer, sfx) for layer in range(self.num_layers)
                for sfx in ("", "_reverse")[: self.num_directions]]

    def _direction_params(self, k):
        """Direction ``k``'s parameters under the cell's own names (None for absent biases)."""
        return {name: self.params.get(full) for name, full in self._names[k].items()}

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if type(self) is Recurrent:
            s = f"{self.cell.name!r}, " + s
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for flag in ("batch_first", "bidirectional"):
            if getattr(self, flag):
                s += f", {flag}=True"
        if not self.bias:
            s += ", bias=False"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.recurrent_dropout:
            s += f", recurrent_dropout={self.recurrent_dropout}"
        if any(self.zoneout):
            s += f", zoneout={self.zoneout}"
        return s

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
        cache : StackCache to pass to :meth:`backward` (None when not ``keep``)
        """
        xp, x, init, lens, unbatched = check_sequence(self, x, h0, lengths)
        D, ns = self.num_directions, self.cell.num_states
        finals = [[] for _ in range(ns)]
        caches, masks = [], []
        inp = x
        for layer in range(self.num_layers):
            if layer > 0:
                # dropout on the outputs of every layer but the last, as torch.nn does
                inp, m = dropout(inp, self.dropout, self.rng, xp=xp, training=self.training)
                masks.append(m)
            ks = range(layer * D, (layer + 1) * D)  # this layer's directions in h0's first axis
            state0 = tuple(s[layer * D:(layer + 1) * D, ...] for s in init)
            noise = make_noise(self, inp.shape[0], inp.shape[1], xp=xp)
            inp, state, c = layer_forward(self.cell, [self._direction_params(k) for k in ks],
                                          inp, state0, lens, keep, noise, xp=xp)
            caches.append(c)
            for i in range(ns):
                finals[i].append(state[i])
        out = inp
        h_n = [f[0] if len(f) == 1 else xp.concat(f, axis=0) for f in finals]
        if unbatched:
            out, h_n = out[:, 0, :], [h[:, 0, :] for h in h_n]
        elif self.batch_first:
            out = xp.permute_dims(out, (1, 0, 2))
        cache = StackCache(xp, caches, masks, unbatched, tuple(x.shape), weakref.ref(self),
                           tuple(out.shape), tuple(tuple(h.shape) for h in h_n)) if keep else None
        h_n = tuple(h_n) if ns > 1 else h_n[0]
        return out, h_n, cache

    def backward(self, cache, d_out, d_h_n=None):
        """Backpropagation through time over the whole sequence.

        Parameters
        ----------
        cache : StackCache from this layer's :meth:`forward` (with ``keep=True``)
        d_out : array shaped like ``out`` (or None)
        d_h_n : array shaped like ``h_n`` (LSTM: pair, either entry may be None), optional

        Returns
        -------
        dx : array shaped like ``x``
        dh0 : array shaped like ``h0`` (LSTM: pair ``(dh0, dc0)``)
        grads : dict with the keys of :meth:`state_dict`

        Raises
        ------
        TypeError
            For a cache that is not a :class:`StackCache` (``None`` from ``keep=False``).
        ValueError
            For a cache made by another layer, or a ``d_out``/``d_h_n`` whose shape is not that
            of ``out``/``h_n`` (shapes are compared, no data is read).
        """
        check_cache(self, cache, StackCache)
        xp, unbatched, (T, B, _) = cache.xp, cache.unbatched, cache.shape
        D, ns, H = self.num_directions, self.cell.num_states, self.output_size
        d_final = list(d_h_n) if isinstance(d_h_n, tuple) else [d_h_n] * (ns if d_h_n is None
                                                                           else 1)
        if len(d_final) != ns:
            raise ValueError(f"d_h_n must hold {ns} entries (one per state "
                             f"{self.cell.states}), got {len(d_final)}")
        check_grad(d_out, cache.out_shape, "d_out")
        for i, (d, shape) in enumerate(zip(d_final, cache.state_shapes)):
            check_grad(d, shape, f"d_h_n[{i}]" if ns > 1 else "d_h_n")
        d_final = [xp.zeros((self.num_layers * D, B, n), dtype=self.dtype, device=self.device)
                   if d is None else (d[:, None, :] if unbatched else d)
                   for d, n in zip(d_final, self.state_sizes)]
        if d_out is None:
            d_out = xp.zeros((T, B, D * H), dtype=self.dtype, device=self.device)
        elif unbatched:
            d_out = d_out[:, None, :]
        elif self.batch_first:
            d_out = xp.permute_dims(d_out, (1, 0, 2))
        grads, dstate0 = {}, [[None] * self.num_layers for _ in range(ns)]
        for layer in range(self.num_layers - 1, -1, -1):
            rows = slice(layer * D, (layer + 1) * D)
            d_in, ds0, gs = layer_backward(cache.layers[layer], d_out,
                                           tuple(s[rows, ...] for s in d_final), xp=xp)
            for i in range(ns):
                dstate0[i][layer] = ds0[i]
            for k, g in zip(range(layer * D, (layer + 1) * D), gs):
                grads.update({self._names[k][name]: v for name, v in g.items()})
            d_out = d_in if layer == 0 else dropout_backward(d_in, cache.dropout_masks[layer - 1])
        dh0 = [s[0] if len(s) == 1 else xp.concat(s, axis=0) for s in dstate0]
        dx = d_out
        if unbatched:
            dx, dh0 = dx[:, 0, :], [h[:, 0, :] for h in dh0]
        elif self.batch_first:
            dx = xp.permute_dims(dx, (1, 0, 2))
        dh0 = tuple(dh0) if ns > 1 else dh0[0]
        return dx, dh0, {k: grads[k] for k in self.params}

    def __call__(self, x, h0=None, lengths=None):
        """``out, h_n = layer(x, h0=None, lengths=None)``; see :meth:`forward`."""
        out, h_n, _ = self.forward(x, h0, lengths, keep=False)
        return out, h_n
