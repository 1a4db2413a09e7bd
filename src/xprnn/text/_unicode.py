"""The Unicode word rule of :func:`xprnn.text.tokenize_words`: words are the runs of letters,
numbers and combining marks of any script, case-folded.

``[^\\W_]+`` alone would keep letters and digits of every script but cut words at their combining
marks (Devanagari's vowel signs and virama, a decomposed "é"), so the marks are added to the
class. Python's ``\\w`` is exactly the Unicode letters and numbers (categories L and N) plus ``_``;
the marks (category M) are listed from :mod:`unicodedata` once, on first use.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import lru_cache
from itertools import chain

__all__ = ["unicode_words", "APOSTROPHES", "TOKEN_PATTERN"]

# deleted before words are found, so "don't" is one word, "dont", as in the ASCII rule (and as in
# the English stop-word list): the ASCII apostrophe, the right single quote, the modifier letter
APOSTROPHES = re.compile("['\u2019\u02bc]")
# the same rule for regex engines with Unicode properties (ICU, Java, .NET, JavaScript's /u)
TOKEN_PATTERN = r"[\p{L}\p{N}\p{M}]+"


def _marks(code_points):
    """A regex character class body of the combining marks among ``code_points``."""
    ranges, start, prev = [], None, None
    for cp in chain(code_points, [None]):
        if cp is not None and unicodedata.category(chr(cp))[0] == "M":
            start, prev = (cp if start is None else start), cp
        elif start is not None:
            ranges.append(re.escape(chr(start)) + ("" if prev == start else
                                                   "-" + re.escape(chr(prev))))
            start = None
    return "".join(ranges)


@lru_cache(maxsize=1)
def _patterns():
    """``(bmp, full)``: the word pattern for texts within the Basic Multilingual Plane, and for
    any text. Python's ``re`` tests a class of code points past U+FFFF range by range, several
    times slower, so only texts that hold such characters pay for it."""
    bmp = _marks(range(0x10000))
    # marks beyond the BMP lie in planes 1 (historic scripts, musical notation) and 14
    # (variation selectors); planes 2-3 hold ideographs only, 15-16 private use
    astral = _marks(chain(range(0x10000, 0x20000), range(0xE0000, min(0xF0000,
                                                                        sys.maxunicode + 1))))
    mark = f"(?:[{bmp}]|[{astral}])"
    return (re.compile(f"[{bmp}]*\\w+(?:[{bmp}]+\\w*)*"),
            re.compile(f"{mark}*\\w+(?:{mark}+\\w*)*"))


def unicode_words(text):
    """The words of ``text``: case-folded (``str.casefold``, so "Straße" is "strasse"), in NFC,
    apostrophes deleted, then each run of letters, numbers and combining marks of any script
    (``[\\p{L}\\p{N}\\p{M}]+``); everything else, ``_`` included, separates words.

    >>> unicode_words("Clichés of the 21st century: Straße, Привет, 你好, don't_stop")
    ['clichés', 'of', 'the', '21st', 'century', 'strasse', 'привет', '你好', 'dont', 'stop']
    """
    text = unicodedata.normalize("NFC", text.casefold())
    text = APOSTROPHES.sub("", text).replace("_", " ")
    bmp, full = _patterns()
    return (full if text and max(text) > "\uffff" else bmp).findall(text)
