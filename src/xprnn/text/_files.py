"""File reading helpers of :mod:`xprnn.text.readers`: bytes with a clear error, decoding that
names the file, line and byte, and CSV/TSV tables read into columns with every record accounted
for: a bad record is an error naming its line, or with ``on_bad_rows="skip"`` a warning that
says how many rows were read from how many lines and which lines were skipped.

Quoting (``quoting=``):

- ``"none"``: quotes are text; one record per line (the default for tab-separated files,
  whose texts often hold quotes);
- ``"csv"``: CSV quoting (a quoted field may hold the delimiter, ``""`` is a quote), but a record
  must end on the line where it starts (the default for other delimiters);
- ``"multiline"``: CSV quoting, and a quoted field may run over several lines.

A stray quote under CSV quoting swallows the following lines into one field, labels included;
``"csv"`` turns that into an error naming the line, where ``"multiline"`` has to trust it.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import warnings
import zlib
from pathlib import Path

__all__ = ["SkippedRowsWarning", "QUOTINGS"]

QUOTINGS = ("none", "csv", "multiline")
_ON_BAD = ("error", "skip")
_SHOWN = 5  # skipped lines listed in a warning


class SkippedRowsWarning(UserWarning):
    """A reader skipped bad rows because it was asked to (``on_bad_rows="skip"``)."""


def _check_encoding(encoding):
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise ValueError(f"encoding: unknown text encoding {encoding!r}") from None


def _decode(data: bytes, encoding: str, where: str) -> str:
    """``data`` as text; undecodable bytes name the file, line, byte and ``--encoding``."""
    _check_encoding(encoding)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - data.rfind(b"\n", 0, e.start)  # 1-based byte of the line
        bom = data.startswith((b"\xff\xfe", b"\xfe\xff"))
        hint = "utf-16 (the file starts with its byte-order mark)" if bom else "cp1252 or latin-1"
        # (for a .gz file, the line and offset are those of the decompressed text)
        raise ValueError(
            f"{where}: line {line}: byte 0x{data[e.start]:02x} at offset {e.start} (byte "
            f"{column} of the line) cannot be decoded as {encoding} ({e.reason}); pass the "
            f"file's encoding with --encoding (encoding= in Python), e.g. {hint}"
        ) from None
    return text[1:] if text.startswith("\ufeff") else text  # drop a byte-order mark


def _read_bytes(path) -> tuple[Path, bytes]:
    """The file's bytes (gunzipped for ``.gz``); errors for missing, unreadable, empty files."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{p}: no such file")
    if not p.is_file():
        raise ValueError(f"{p}: not a file")
    try:
        if p.suffix.lower() == ".gz":
            with gzip.open(p, "rb") as f:
                data = f.read()
        else:
            data = p.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{p}: cannot be read ({e})") from None
    if not data or data.isspace():
        raise ValueError(f"{p}: the file is empty")
    return p, data


def _records(text, delimiter: str, quoting: str):
    """``(first line, last line, fields, error)`` of every non-blank record of ``text`` (a str,
    or an iterable of lines that keep their line ends, read as it goes)."""
    lines = io.StringIO(text, newline="") if isinstance(text, str) else text
    if quoting == "none":
        reader = csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_NONE)
    else:  # strict: text after a closing quote is an error, not glued to the field
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:  # the reader resumes on the next line
            reason = str(e).replace("\t", "\\t")  # "'\t' expected after '"'", tab shown
            yield start, max(start, reader.line_num), None, f"{reason} (quoting {quoting!r})"
            continue
        if row:
            yield start, reader.line_num, row, None


def _column(where, names, column, arg) -> int:
    if names is None:  # header=False: columns are positions
        if isinstance(column, bool) or not isinstance(column, int) or column < 0:
            raise ValueError(
                f"{arg} must be a 0-based column number when header=False, got {column!r}"
            )
        return column
    if isinstance(column, int) and not isinstance(column, bool):
        if not 0 <= column < len(names):
            raise ValueError(f"{where}: {arg}={column} but the header has {len(names)} columns")
        return column
    try:
        return names.index(column)
    except ValueError:
        raise ValueError(
            f"{where}: no column {column!r} ({arg}) in the header; columns found: {names}"
        ) from None


def _options(p: Path, delimiter, quoting, on_bad_rows):
    if delimiter is None:
        name = p.name.lower().removesuffix(".gz")
        delimiter = "\t" if name.endswith((".tsv", ".tab")) else ","
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(f"delimiter must be one character, got {delimiter!r}")
    if quoting is None:
        quoting = "none" if delimiter == "\t" else "csv"
    if quoting not in QUOTINGS:
        raise ValueError(f"quoting must be one of {QUOTINGS}, got {quoting!r}")
    if on_bad_rows not in _ON_BAD:
        raise ValueError(f"on_bad_rows must be one of {_ON_BAD}, got {on_bad_rows!r}")
    return delimiter, quoting


def _hint(reason, delimiter, quoting):
    if "runs on to line" in reason:
        return ("; if quotes are part of the text pass quoting='none' (--quoting none), if the "
                "file quotes texts that span lines pass quoting='multiline'")
    if reason.startswith("column"):
        return ""
    if quoting == "none":
        return (f" (delimiter {delimiter!r}, quotes read as text); is the delimiter right, or "
                "does a text hold it? (--delimiter, or --quoting csv for quoted fields)")
    return (f" (delimiter {delimiter!r}); is the delimiter right, or is a quote part of the "
            "text? (--delimiter, --quoting none)")


def _read_table(path, columns, args, delimiter=None, header=True, encoding="utf-8",
                quoting=None, on_bad_rows="error"):
    """The requested columns of a CSV/TSV file as lists of non-empty strings."""
    p, data = _read_bytes(path)
    out = [[] for _ in columns]
    rows = _table_rows(str(p), _decode(data, encoding, str(p)), columns, args, delimiter,
                       header, quoting, on_bad_rows, name=p.name, stacklevel=4)
    for _, row in rows:
        for col, value in zip(out, row, strict=True):
            col.append(value)
    return out


def _table_rows(where, text, columns, args, delimiter=None, header=True, quoting=None,
                on_bad_rows="error", *, name=None, required=None, stacklevel=2):
    """``(first line, [value of each of columns])`` of every good record of ``text`` (a str or
    an iterable of lines with their ends, read as it goes), checked as the module docstring
    says; ``required``: the columns that may not be empty (default: all). A
    :class:`SkippedRowsWarning` at the end lists the rows skipped; no row at all is an error."""
    delimiter, quoting = _options(Path(name or where), delimiter, quoting, on_bad_rows)
    records = _records(text, delimiter, quoting)
    names, at, width = None, where, None
    if header:
        first = next(records, None)
        if first is None:
            raise ValueError(f"{where}: the file is empty")
        start, _, row, error = first
        at = f"{where}: line {start}"
        if row is None:
            raise ValueError(f"{at}: the header cannot be read: {error}")
        names = [n.strip() for n in row]
        width = len(names)
    index = [_column(at, names, c, a) for c, a in zip(columns, args, strict=True)]
    need = max(index) + 1
    check = [(i, c) for i, c in zip(index, columns, strict=True)
             if required is None or c in required]
    bad, n_bad, bad_lines, seen, good = [], 0, 0, 0, 0  # bad: the first _SHOWN only
    for start, end, row, reason in records:
        seen += end - start + 1
        if reason is None and end > start and quoting != "multiline":
            reason = f"a quoted field runs on to line {end}"
        if reason is None and width is None and len(row) < need:
            reason = f"{len(row)} field(s), expected at least {need}"
        if reason is None:
            width = len(row) if width is None else width
            if len(row) != width:
                told = "as the header" if header else "as the first row"
                reason = f"{len(row)} field(s), expected {width} {told}"
            else:
                empty = [c for i, c in check if not row[i].strip()]
                reason = f"column {empty[0]!r} is empty" if empty else None
        if reason is not None:
            if on_bad_rows == "error":
                raise ValueError(f"{where}: line {start}: {reason}"
                                 f"{_hint(reason, delimiter, quoting)}")
            n_bad, bad_lines = n_bad + 1, bad_lines + end - start + 1
            if len(bad) < _SHOWN:
                bad.append((start, reason))
            continue
        good += 1
        yield start, [row[i] for i in index]
    if n_bad:
        listed = "; ".join(f"line {s}: {r}" for s, r in bad)
        more = f"; and {n_bad - _SHOWN} more" if n_bad > _SHOWN else ""
        warnings.warn(f"{where}: read {good} rows from {seen} data lines; skipped "
                      f"{n_bad} bad row(s) over {bad_lines} line(s): {listed}{more}",
                      SkippedRowsWarning, stacklevel=stacklevel)
    if not good:
        raise ValueError(f"{where}: no data rows{' after the header' if header else ''}"
                         + (f" ({n_bad} bad rows skipped)" if n_bad else ""))
