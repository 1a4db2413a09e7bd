"""Recurrent cells: the contract (:mod:`~xprnn.cells.base`) and the cells that ship with xprnn.

Each cell is one module that ends with ``register(Cell(...))``; importing it makes the cell
available by name everywhere (``xprnn.nn.Recurrent(cell="lstm", ...)``, the models, the CLI).
"""

from . import elman, gru, lstm
from .base import Cell, Weights, get, names, register

__all__ = ["Cell", "Weights", "register", "get", "names", "elman", "lstm", "gru"]
