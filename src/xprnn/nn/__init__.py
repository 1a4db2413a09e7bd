"""Layers: the ``Module`` shell, the recurrent loop and layers, and the pieces around them
(linear, embedding, dropout, pooling, losses). Each layer is a thin shell over pure functions,
forward beside backward."""

from .dropout import Dropout, dropout, dropout_backward
from .embedding import Embedding
from .layer import Recurrent
from .linear import Linear, linear, linear_backward
from .losses import log_softmax, mse_loss, softmax, softmax_cross_entropy
from .module import Module
from .rnn import GRU, LSTM, RNN
from .rnn_cell import GRUCell, LSTMCell, RecurrentCell, RNNCell
from .sampled_softmax import sampled_softmax_cross_entropy

__all__ = [
    "Module", "Recurrent", "RNN", "LSTM", "GRU", "RecurrentCell", "RNNCell", "LSTMCell", "GRUCell",
    "Linear", "Embedding", "Dropout",
    "linear", "linear_backward", "dropout", "dropout_backward",
    "softmax", "log_softmax", "softmax_cross_entropy", "sampled_softmax_cross_entropy", "mse_loss",
]
