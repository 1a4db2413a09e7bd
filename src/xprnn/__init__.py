"""xprnn: RNN, LSTM and GRU with hand-written BPTT, on any Array API backend.

The backend follows the arrays: NumPy arrays run on the CPU, CuPy arrays on the GPU, torch
tensors and array-api-strict arrays through the same code.

The floors, each importing only from those below it: :mod:`~xprnn.backend` (namespaces, host
transfer, random numbers, scatter-add, the kernel seam), :mod:`~xprnn.cells` (the cell contract
and the cells), :mod:`~xprnn.nn` (modules, the time loop, layers, losses),
:mod:`~xprnn.checkpoint`, :mod:`~xprnn.models`, :mod:`~xprnn.optim`, :mod:`~xprnn.training`;
:mod:`~xprnn.text` (host-side data) beside them; :mod:`~xprnn.cli` on top.
"""

from . import backend, cells, models, nn, optim, text, training
from ._version import __version__
from .checkpoint import load, save
from .models import LanguageModel, SequenceClassifier
from .nn import (
    GRU,
    LSTM,
    RNN,
    Dropout,
    Embedding,
    GRUCell,
    Linear,
    LSTMCell,
    Module,
    Recurrent,
    RecurrentCell,
    RNNCell,
    log_softmax,
    mse_loss,
    softmax,
    softmax_cross_entropy,
)
from .text import batching, readers
from .training import History, TrainingDiverged, clip_grad_norm, evaluate, fit, train_step

__all__ = [
    "RNN", "LSTM", "GRU", "Recurrent", "RNNCell", "LSTMCell", "GRUCell", "RecurrentCell",
    "Module", "Linear", "Embedding", "Dropout",
    "softmax", "log_softmax", "softmax_cross_entropy", "mse_loss", "clip_grad_norm",
    "SequenceClassifier", "LanguageModel", "save", "load",
    "fit", "evaluate", "train_step", "History", "TrainingDiverged",
    "backend", "cells", "nn", "models", "optim", "training", "text", "batching", "readers",
    "__version__",
]
