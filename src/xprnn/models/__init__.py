"""Ready models: a sequence classifier (sentiment), a language model (next token), and the
bag-of-words baseline a classifier is measured against (:mod:`xprnn.models.bow`).

Each is ``Embedding -> Recurrent -> Linear`` with dropout, a ``forward``/``backward`` pair and a
``loss`` that does both and returns the gradients keyed like ``state_dict()``
(``embedding.weight``, ``rnn.weight_ih_l0``, ..., ``fc.weight``, ``fc.bias``), and the training
protocol of :mod:`xprnn.models.base` that :func:`xprnn.fit` drives.
"""

from .base import RNNModel, ids_on
from .bow import BagOfNgrams
from .classifier import SequenceClassifier
from .language import LanguageModel
from .sampling import sample_next

__all__ = ["SequenceClassifier", "LanguageModel", "BagOfNgrams", "RNNModel", "ids_on",
           "sample_next"]
