"""File reading helpers of :mod:`xprnn.text.readers`: bytes with a clear error, decoding that
names the file, and CSV/TSV tables read into columns with the line of every problem."""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from pathlib import Path

__all__ = []


def _decode(data: bytes, encoding: str, where: str) -> str:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        # (for a .gz file, the line and offset are those of the decompressed text)
        raise ValueError(
            f"{where}: line {line}: the bytes at offset {e.start} cannot be decoded as "
            f"{encoding} ({e.reason}); pass the file's encoding with encoding="
        ) from None
    except LookupError:
        raise ValueError(f"encoding: unknown text encoding {encoding!r}") from None
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


def _rows(text: str, delimiter: str, where: str):
    """``(line, fields)`` for every non-blank row; ``line`` is where the row starts."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise ValueError(f"{where}: line {reader.line_num}: {e}") from None
        if row:
            yield line, row
        line = reader.line_num + 1


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


def _read_table(path, columns, args, delimiter=None, header=True, encoding="utf-8"):
    """The requested columns of a CSV/TSV file as lists of non-empty strings."""
    p, data = _read_bytes(path)
    where = str(p)
    if delimiter is None:
        name = p.name.lower().removesuffix(".gz")
        delimiter = "\t" if name.endswith((".tsv", ".tab")) else ","
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(f"delimiter must be one character, got {delimiter!r}")
    rows = _rows(_decode(data, encoding, where), delimiter, where)
    names, at = None, where
    if header:
        first = next(rows, None)
        if first is None:
            raise ValueError(f"{where}: the file is empty")
        at = f"{where}: line {first[0]}"
        names = [n.strip() for n in first[1]]
    index = [_column(at, names, c, a) for c, a in zip(columns, args, strict=True)]
    need = max(index) + 1
    out = [[] for _ in columns]
    for line, row in rows:
        if len(row) < need:
            raise ValueError(
                f"{where}: line {line}: {len(row)} field(s), expected at least {need} "
                f"(delimiter {delimiter!r}); is a quote missing or the delimiter wrong?"
            )
        for col, i, c in zip(out, index, columns, strict=True):
            if not row[i].strip():
                raise ValueError(f"{where}: line {line}: column {c!r} is empty")
            col.append(row[i])
    if not out[0]:
        raise ValueError(f"{where}: no data rows{' after the header' if header else ''}")
    return out
