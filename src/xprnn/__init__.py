"""xprnn: RNN, LSTM and GRU with hand-written BPTT, on any Array API backend."""

from .rnn import GRU, LSTM, RNN

__all__ = ["RNN", "LSTM", "GRU"]
__version__ = "0.1.0"
