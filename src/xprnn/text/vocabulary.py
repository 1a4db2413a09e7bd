"""Text to integer ids: tokenizers and a vocabulary (batching is in :mod:`xprnn.text.batching`).

This is data handling, not maths: it works on Python lists and NumPy ``int64`` arrays, and a
training loop moves each batch to its backend afterwards (``xprnn.backend.from_numpy``).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from importlib import resources

from ._unicode import unicode_words

__all__ = [
    "PAD",
    "UNK",
    "tokenize_words",
    "tokenize_chars",
    "WORD_RULES",
    "english_stopwords",
    "Vocabulary",
]

PAD = "<pad>"
UNK = "<unk>"

# IMDB marks line breaks with HTML (`<br />`); they separate words, so they become spaces.
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
# The seed notebook's `[^a-zA-Z\s]` applied after lowercasing: digits, punctuation, apostrophes
# ("don't" -> "dont") and non-ASCII letters ("café" -> "caf") all go.
_NOT_LETTER = re.compile(r"[^a-z\s]")
WORD_RULES = ("unicode", "ascii")  # the rules of tokenize_words, the default first


@lru_cache(maxsize=1)
def english_stopwords() -> frozenset[str]:
    """NLTK's 179 English stop words, apostrophes removed as the tokenizer does (178 words)."""
    path = resources.files("xprnn") / "data" / "stopwords_english.txt"
    return frozenset(path.read_text(encoding="utf-8").split())


def _stopword_set(stopwords) -> frozenset:
    if stopwords is None:
        return frozenset()
    if isinstance(stopwords, str):
        if stopwords == "english":
            return english_stopwords()
        raise ValueError(
            f"stopwords must be None, 'english' or an iterable of words, got the string "
            f"{stopwords!r} (wrap a single word in a list)"
        )
    try:
        return frozenset(stopwords)
    except TypeError:
        raise TypeError(
            f"stopwords must be None, 'english' or an iterable of words, "
            f"got {type(stopwords).__name__}"
        ) from None


def tokenize_words(text: str, stopwords=None, *, rule="unicode") -> list[str]:
    """Split a review into lowercase words.

    Turn ``<br />`` (``<br/>``, ``<br>``) into spaces, then by ``rule``:

    - ``"unicode"`` (the default): case-fold (``str.casefold``: "Straße" is "strasse"), delete
      apostrophes ("don't" is "dont"), and keep each run of letters, numbers and combining
      marks of any script as a word ("clichés", "21st", "привет", "你好"); every other
      character separates words ("well-made" is two words);
    - ``"ascii"``: the seed notebook's rule: lowercase, delete every character that is not an
      ASCII letter or whitespace ("clichés" is "clichs", "21st" is "st", "well-made" is
      "wellmade"), split on whitespace;

    then drop the stop words.

    Parameters
    ----------
    text : str
    stopwords : None, "english" or iterable of str
        Words to drop, compared with the tokens as produced (lowercase, no apostrophes).
        ``"english"`` is :func:`english_stopwords`.
    rule : {"unicode", "ascii"}

    Examples
    --------
    >>> tokenize_words("I didn't like it.<br /><br />Not at ALL!", stopwords="english")
    ['like']
    >>> tokenize_words("Clichés of the 21st century"), tokenize_words("Clichés of the 21st "
    ...                                                               "century", rule="ascii")
    (['clichés', 'of', 'the', '21st', 'century'], ['clichs', 'of', 'the', 'st', 'century'])
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if rule not in WORD_RULES:
        raise ValueError(f"rule must be one of {WORD_RULES}, got {rule!r}")
    stop = _stopword_set(stopwords)
    text = _BREAK.sub(" ", text)
    words = unicode_words(text) if rule == "unicode" else _NOT_LETTER.sub("", text.lower()).split()
    return [w for w in words if w not in stop] if stop else words


def tokenize_chars(text: str) -> list[str]:
    """The characters of ``text``, one token each (for character-level language models)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return list(text)


class Vocabulary:
    """A fixed mapping between tokens and ids ``0 .. len - 1``.

    Parameters
    ----------
    tokens : iterable of str
        Token ``i`` gets id ``i``; no duplicates.
    pad_token, unk_token : str or None
        The tokens that play the padding and unknown roles; a role is absent (``pad_id`` or
        ``unk_id`` is None) when its token is not in ``tokens``.

    Attributes
    ----------
    tokens : list of str
        id -> token.
    index : dict of str to int
        token -> id.
    """

    def __init__(self, tokens, *, pad_token=PAD, unk_token=UNK):
        self.tokens = list(tokens)
        self.index = {}
        for i, t in enumerate(self.tokens):
            if not isinstance(t, str):
                raise TypeError(f"tokens must be str, got {t!r} ({type(t).__name__}) at id {i}")
            if t in self.index:
                raise ValueError(f"token {t!r} appears twice (ids {self.index[t]} and {i})")
            self.index[t] = i
        self.pad_token, self.unk_token = pad_token, unk_token
        self.pad_id = self.index.get(pad_token) if pad_token is not None else None
        self.unk_id = self.index.get(unk_token) if unk_token is not None else None

    @classmethod
    def build(cls, token_lists, min_freq=1, max_size=None, specials=(PAD, UNK)):
        """Count tokens and keep the frequent ones, most frequent first.

        Ties in frequency are broken alphabetically, so the result does not depend on the order
        in which texts were seen.

        Parameters
        ----------
        token_lists : iterable of iterable of str
            One token list per text (a plain ``str`` counts as its characters).
        min_freq : int
            Keep tokens seen at least this often.
        max_size : int, optional
            Largest ``len(vocab)``, specials included.
        specials : sequence of str
            Put first, in this order (so ``<pad>`` = 0, ``<unk>`` = 1 by default); use ``()``
            or ``("<pad>",)`` for character vocabularies.
        """
        if isinstance(token_lists, str):
            raise TypeError("token_lists must be an iterable of token lists, got one str")
        if isinstance(min_freq, bool) or not isinstance(min_freq, int) or min_freq < 1:
            raise ValueError(f"min_freq must be an int >= 1, got {min_freq!r}")
        specials = list(specials)
        if max_size is not None and (
            isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < len(specials)
        ):
            raise ValueError(
                f"max_size must be None or an int >= len(specials) = {len(specials)}, "
                f"got {max_size!r}"
            )
        counts = Counter()
        for toks in token_lists:
            counts.update(toks)
        for t in counts:
            if not isinstance(t, str):
                raise TypeError(
                    f"tokens must be str, got {t!r} ({type(t).__name__}); token_lists must be "
                    "an iterable of token lists, e.g. [tokenize_words(t) for t in texts]"
                )
        for s in specials:
            counts.pop(s, None)
        ranked = sorted(
            (t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t)
        )
        if max_size is not None:
            ranked = ranked[: max_size - len(specials)]
        return cls(specials + ranked)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token) -> bool:
        return token in self.index

    def __eq__(self, other) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # mutable container semantics, like list

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self.tokens[:5])
        more = ", ..." if len(self) > 5 else ""
        ids = f"pad_id={self.pad_id}, unk_id={self.unk_id}"
        return f"Vocabulary({len(self)} tokens: [{head}{more}], {ids})"

    def encode(self, tokens) -> list[int]:
        """Ids of ``tokens``; unknown tokens get ``unk_id`` (a KeyError if there is none)."""
        index, unk = self.index, self.unk_id
        if unk is not None:
            return [index.get(t, unk) for t in tokens]
        ids = []
        for t in tokens:
            try:
                ids.append(index[t])
            except KeyError:
                raise KeyError(
                    f"token {t!r} is not in the vocabulary and it has no unknown token "
                    f"({self.unk_token!r}); build it with that special to map unseen tokens"
                ) from None
        return ids

    def decode(self, ids) -> list[str]:
        """Tokens of ``ids`` (ints or a 1-D integer array); padding is not removed."""
        n = len(self.tokens)
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise IndexError(f"id {i} is out of range for a vocabulary of {n} tokens")
            out.append(self.tokens[i])
        return out

    def to_dict(self) -> dict:
        """JSON-serialisable form; ``Vocabulary.from_dict(v.to_dict()) == v``."""
        return {
            "tokens": list(self.tokens),
            "pad_token": self.pad_token,
            "unk_token": self.unk_token,
        }

    @classmethod
    def from_dict(cls, d) -> Vocabulary:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(d, dict) or "tokens" not in d:
            raise ValueError("from_dict expects a dict with a 'tokens' list (from to_dict())")
        extra = set(d) - {"tokens", "pad_token", "unk_token"}
        if extra:
            raise ValueError(f"from_dict: unexpected keys {sorted(extra)}")
        return cls(
            d["tokens"], pad_token=d.get("pad_token", PAD), unk_token=d.get("unk_token", UNK)
        )
