"""Texts read as they are needed, for inputs of any size: the lines of a file or of standard
input (:func:`iter_lines`) and a column of a CSV/TSV file (:func:`iter_column`), one at a time,
in constant memory.

They follow the whole-file readers of :mod:`xprnn.text.readers`: ``.gz`` files are opened
transparently, the encoding is UTF-8 by default (a byte-order mark is dropped), undecodable bytes
are a ``ValueError`` naming the file, line and byte, and a CSV/TSV file is checked row by row as
:func:`~xprnn.text.readers.read_csv` checks it (a bad row is an error naming its line, or with
``on_bad_rows="skip"`` a :class:`~xprnn.text.readers.SkippedRowsWarning` at the end).

Both yield ``(line, text)``, ``line`` being the 1-based line of the input where the text starts,
so that a result can be traced back to its input. A :class:`TextSource` says how far the file
has been read, in bytes, for a progress bar.
"""

from __future__ import annotations

import codecs
import gzip
import itertools
import re
import zlib
from pathlib import Path

from ._files import _check_encoding, _table_rows

__all__ = ["TextSource", "iter_lines", "iter_column"]

# a line and its end: "\r\n", "\n" or a lone "\r" (old Macintosh files), as read_lines splits
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


class TextSource:
    """A file (``.gz`` transparently) or a binary stream such as ``sys.stdin.buffer``, decoded
    line by line.

    Parameters
    ----------
    source : str, Path or binary file object
        A stream is read as it comes and not closed; gzip-compressed data is recognised by its
        first bytes where the stream can peek (``sys.stdin.buffer`` can), a file by ``.gz``.
    encoding : str
    name : str, optional
        What errors call the input (default: the path, or the stream's ``name``).

    Attributes
    ----------
    size : int or None
        Bytes in the file (compressed, for ``.gz``); ``None`` for a stream.
    """

    def __init__(self, source, encoding="utf-8", name=None):
        _check_encoding(encoding)
        self.encoding = encoding
        # encodings where b"\n" is always a line end (UTF-8, cp1252, latin-1, ...) are split on
        # bytes, so an undecodable byte is named by line and offset exactly; others (UTF-16)
        # go through an incremental decoder
        self._bytewise = "\n\r".encode(encoding, "replace") == b"\n\r" and \
            "a".encode(encoding) == b"a"
        self._owned = isinstance(source, (str, Path))
        if self._owned:
            p = Path(source)
            self.name = name or str(p)
            if not p.exists():
                raise ValueError(f"{p}: no such file")
            if p.is_dir():
                raise ValueError(f"{p}: is a folder, not a file")
            try:
                self._raw = open(p, "rb")  # noqa: SIM115 (closed by close())
            except OSError as e:
                raise ValueError(f"{p}: cannot be read ({e})") from None
            # a named pipe or a command's output (<(command)) has no size
            self.size = p.stat().st_size if p.is_file() else None
            gz = p.suffix.lower() == ".gz"
        else:
            self._raw = source
            self.name = name or str(getattr(source, "name", "<stream>"))
            # gzip's magic bytes, where the stream can show them without consuming them
            peek = getattr(source, "peek", None)
            self.size, gz = None, peek is not None and peek(2)[:2] == b"\x1f\x8b"
        self._file = gzip.GzipFile(fileobj=self._raw, mode="rb") if gz else self._raw
        self._read = 0

    def tell(self):
        """Bytes of the input read so far (compressed, for ``.gz``; an estimate for a stream,
        which is read ahead in blocks)."""
        if self.size is not None:
            try:
                return self._raw.tell()
            except (OSError, ValueError):
                pass
        return self._read

    def close(self):
        if self._owned:
            self._raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def lines(self, keepends=False):
        """``(line number, line)`` of every line (1-based, blank lines included), decoded; the
        line end kept with ``keepends``."""
        number = 0
        for text in (self._bytewise_lines() if self._bytewise else self._decoded_lines()):
            if number == 0 and text.startswith("\ufeff"):
                text = text[1:]  # a byte-order mark
            for line in _LINE.findall(text):
                number += 1
                yield number, line if keepends else line.rstrip("\r\n")

    def _blocks(self, read):
        """Blocks of bytes from ``read``; the errors of a broken file as ``ValueError``."""
        while True:
            try:
                block = read()
            except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as e:
                raise ValueError(f"{self.name}: cannot be read ({e})") from None
            if not block:
                return
            self._read += len(block)
            yield block

    def _bytewise_lines(self):
        offset = 0  # bytes before this line (decompressed, for .gz)
        for number, data in enumerate(self._blocks(self._file.readline), 1):
            try:
                yield data.decode(self.encoding)
            except UnicodeDecodeError as e:
                raise ValueError(
                    f"{self.name}: line {number}: byte 0x{data[e.start]:02x} at offset "
                    f"{offset + e.start} (byte {e.start + 1} of the line) cannot be decoded as "
                    f"{self.encoding} ({e.reason}); pass the file's encoding with --encoding "
                    "(encoding= in Python), e.g. cp1252 or latin-1") from None
            offset += len(data)

    def _decoded_lines(self):
        decoder = codecs.getincrementaldecoder(self.encoding)()
        pending, seen = "", 0  # undecided text, line ends before it
        for data in itertools.chain(self._blocks(lambda: self._file.read(1 << 16)), [b""]):
            try:
                pending += decoder.decode(data, final=not data)
            except UnicodeDecodeError as e:
                line = seen + pending.count("\n") + 1  # at the earliest
                raise ValueError(
                    f"{self.name}: line {line} or later cannot be decoded as {self.encoding} "
                    f"({e.reason}); pass the file's encoding with --encoding (encoding= in "
                    "Python)") from None
            # whole lines only: a final "\r" may be the start of "\r\n"
            end = max(pending.rfind("\n"), pending.rfind("\r", 0, len(pending) - 1)) + 1
            if end:
                seen += pending.count("\n", 0, end)
                yield pending[:end]
                pending = pending[end:]
        if pending:
            yield pending


def iter_lines(source, encoding="utf-8", *, name=None):
    """``(line, text)`` for every line of ``source``, blank lines included (as ``""`` or the
    whitespace they hold), without the line end.

    Parameters
    ----------
    source : str, Path, binary file object or TextSource
    encoding : str
    name : str, optional
        What errors call the input.

    Yields
    ------
    line : int
        1-based.
    text : str
    """
    if isinstance(source, TextSource):
        yield from source.lines()
        return
    with TextSource(source, encoding, name) as src:
        yield from src.lines()


def iter_column(source, column="review", *, delimiter=None, header=True, encoding="utf-8",
                quoting=None, on_bad_rows="error", allow_empty=False, name=None):
    """``(line, text)`` for every data row of a CSV/TSV file, read as it goes.

    Parameters
    ----------
    source : str, Path, binary file object or TextSource
    column : str or int
        Column name, or 0-based position (required when ``header=False``).
    delimiter, header, encoding, quoting, on_bad_rows
        As for :func:`~xprnn.text.readers.read_csv`.
    allow_empty : bool
        Yield empty texts (as ``""``) instead of treating them as bad rows.
    name : str, optional
        What errors call the input (also picks the default delimiter: tab for ``.tsv``).

    Yields
    ------
    line : int
        The 1-based line where the row starts.
    text : str
    """
    src = source if isinstance(source, TextSource) else TextSource(source, encoding, name)
    try:
        rows = _table_rows(src.name, (line for _, line in src.lines(keepends=True)), [column],
                           ["text_column"], delimiter, header, quoting, on_bad_rows,
                           name=name or src.name, required=() if allow_empty else None,
                           stacklevel=3)
        for line, (text,) in rows:
            yield line, text
    finally:
        if src is not source:
            src.close()
