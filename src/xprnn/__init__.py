"""xprnn: RNN, LSTM and GRU with hand-written BPTT, on any Array API backend.

The backend follows the arrays: NumPy arrays run on the CPU, CuPy arrays on the GPU, torch
tensors and array-api-strict arrays through the same code.
"""

from . import batching, models, optim, readers, text
from .checkpoint import load, save
from .clip import clip_grad_norm
from .dropout import Dropout
from .embedding import Embedding
from .linear import Linear
from .losses import log_softmax, mse_loss, softmax, softmax_cross_entropy
from .models import LanguageModel, SequenceClassifier
from .rnn import GRU, LSTM, RNN
from .train import History, TrainingDiverged, evaluate, fit

__all__ = [
    "RNN", "LSTM", "GRU", "Linear", "Embedding", "Dropout",
    "softmax", "log_softmax", "softmax_cross_entropy", "mse_loss", "clip_grad_norm",
    "SequenceClassifier", "LanguageModel", "save", "load",
    "fit", "evaluate", "History", "TrainingDiverged",
    "batching", "models", "optim", "readers", "text",
]
__version__ = "0.1.0"
