"""xprnn: RNN, LSTM and GRU with hand-written BPTT, on any Array API backend."""

from .linear import Linear
from .losses import log_softmax, mse_loss, softmax, softmax_cross_entropy
from .rnn import GRU, LSTM, RNN

__all__ = [
    "RNN", "LSTM", "GRU", "Linear",
    "softmax", "log_softmax", "softmax_cross_entropy", "mse_loss",
]
__version__ = "0.1.0"
