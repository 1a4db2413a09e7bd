"""``RNN``, ``LSTM`` and ``GRU``: :class:`~xprnn.nn.layer.Recurrent` with the cell fixed, and
PyTorch's constructor, parameter names and semantics, so weights move between the two
unchanged."""

from __future__ import annotations

from ..cells import elman
from .layer import Recurrent

__all__ = ["RNN", "LSTM", "GRU", "TorchNamed"]


class TorchNamed:
    """Mixin of the classes named after torch's (``RNN``, ``LSTM``, ``GRU`` and their cells):
    the class fixes the cell (``_cell``), or for the Elman ones ``nonlinearity`` names it, so
    their config holds torch's arguments and no cell name."""

    _cell = None  # None: the Elman cell that ``nonlinearity`` names

    @classmethod
    def _cell_of(cls, config):
        """The cell a config of this class runs."""
        return cls._cell or elman.for_nonlinearity(config.get("nonlinearity", "tanh"))

    def _config(self):
        config = super()._config()
        del config["cell"]
        if self._cell is None:
            config["nonlinearity"] = self.nonlinearity
        return config


class RNN(TorchNamed, Recurrent):
    r"""Elman RNN: :math:`h_t = \tanh(x_t W_{ih}^T + b_{ih} + h_{t-1} W_{hh}^T + b_{hh})`.

    Same arguments as ``torch.nn.RNN`` (``input_size, hidden_size, num_layers=1,
    nonlinearity="tanh", bias=True, batch_first=False, dropout=0.0, bidirectional=False``;
    ``dropout`` acts between stacked layers in training mode) plus ``dtype``
    (float32 default, or float64), ``xp``/``device`` (backend; NumPy on the CPU by default) and
    ``seed`` for the initialisation.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", *args, **kw):
        cell = elman.for_nonlinearity(nonlinearity)
        self.nonlinearity = nonlinearity
        super().__init__(cell, input_size, hidden_size, num_layers, *args, **kw)


class _FixedCell(TorchNamed, Recurrent):
    """A layer whose cell is fixed by the class (``_cell``); the constructor is torch's."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, **kw):
        super().__init__(self._cell, input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, **kw)


class LSTM(_FixedCell):
    r"""Long short-term memory, gate order ``i, f, g, o`` as in ``torch.nn.LSTM``.

    :math:`c_t = f \odot c_{t-1} + i \odot g`, :math:`h_t = o \odot \tanh(c_t)`. Arguments as
    :class:`RNN` without ``nonlinearity``, plus ``proj_size`` (see :class:`Recurrent`); states
    are pairs ``(h, c)``.
    """

    _cell = "lstm"


class GRU(_FixedCell):
    r"""Gated recurrent unit, gate order ``r, z, n``, reset applied after the recurrent product
    (the cuDNN/PyTorch convention): :math:`n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h +
    b_{hn}))`, :math:`h_t = (1 - z) \odot n + z \odot h_{t-1}`. Arguments as :class:`RNN`.
    """

    _cell = "gru"
