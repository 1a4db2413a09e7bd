"""Text: tokenizers and the vocabulary (:mod:`~xprnn.text.vocabulary`), padding and batching
(:mod:`~xprnn.text.batching`), and readers for IMDB, CSV/TSV and plain text
(:mod:`~xprnn.text.readers`). Host-side NumPy only: batches reach a model's device in the model.
"""

from . import batching, readers, vocabulary
from .vocabulary import (
    PAD,
    UNK,
    Vocabulary,
    english_stopwords,
    tokenize_chars,
    tokenize_words,
)

__all__ = ["PAD", "UNK", "tokenize_words", "tokenize_chars", "english_stopwords", "Vocabulary",
           "batching", "readers", "vocabulary"]
