"""Readers for corpora labelled by where the texts are: one file per class with one text per
line (``pos.txt``, ``neg.txt``, as in the Cornell sentence-polarity data), and one folder per
class with one text per file (scikit-learn's ``load_files`` layout); re-exported by
:mod:`xprnn.text.readers`."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from ._files import SkippedRowsWarning, _decode, _read_bytes

__all__ = ["read_lines", "read_class_files", "read_folders"]

_NEWLINE = re.compile(r"\r\n|\r|\n")


def read_lines(path, encoding="utf-8"):
    """Every non-blank line of a text file (``.gz`` opened transparently), one text each.

    Parameters
    ----------
    path : str or Path
    encoding : str
        ``"utf-8"`` by default (a byte-order mark is dropped); e.g. ``"cp1252"`` or
        ``"latin-1"`` for older corpora.

    Returns
    -------
    list of str
        The lines without their line ends; blank lines (only whitespace) are not texts and are
        left out, every other line is kept as written.

    Raises
    ------
    ValueError
        For a missing, unreadable, empty or undecodable file (naming the line and byte).
    """
    p, data = _read_bytes(path)
    lines = _NEWLINE.split(_decode(data, encoding, str(p)))
    return [line for line in lines if line.strip()]


def read_class_files(files, encoding="utf-8"):
    """Texts and labels from one file per class, one text per line.

    Parameters
    ----------
    files : sequence of (path, label)
        E.g. ``[("rt-polarity.pos", "positive"), ("rt-polarity.neg", "negative")]``; every
        non-blank line of ``path`` is a text of class ``label`` (:func:`read_lines`).
    encoding : str

    Returns
    -------
    texts : list of str
    labels : list of str
        In file order, then line order.
    """
    pairs = list(files)
    if not pairs:
        raise ValueError("files must name at least one (path, label) pair")
    texts, labels = [], []
    for item in pairs:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"files must hold (path, label) pairs, got {item!r}")
        path, label = item
        label = str(label).strip()
        if not label:
            raise ValueError(f"{path}: the label is empty")
        lines = read_lines(path, encoding)
        texts += lines
        labels += [label] * len(lines)
    return texts, labels


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def read_folders(path, encoding="utf-8"):
    """Texts and labels from one folder per class, one text per file.

    Parameters
    ----------
    path : str or Path
        A folder whose sub-folders are the classes: ``path/<label>/<any name>`` holds one text
        (scikit-learn's ``load_files`` layout). Hidden files and folders (``.name``) are
        ignored; a file directly in ``path`` is not in a class, which a warning says.
    encoding : str

    Returns
    -------
    texts : list of str
    labels : list of str
        The folder names, sorted; files in name order within each.

    Raises
    ------
    ValueError
        For a missing folder, no class folder holding files, or an empty or undecodable text
        (naming the file).
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder")
    entries = sorted(filter(_visible, root.iterdir()))
    folders = [d for d in entries if d.is_dir()]
    loose = [f.name for f in entries if f.is_file()]
    texts, labels, empty = [], [], []
    for folder in folders:
        files = sorted(f for f in folder.iterdir() if _visible(f) and f.is_file())
        if not files:
            empty.append(folder.name)
        for f in files:
            try:
                data = f.read_bytes()
            except OSError as e:
                raise ValueError(f"{f}: cannot be read ({e.strerror or e})") from None
            text = _decode(data, encoding, str(f))
            if not text.strip():
                raise ValueError(f"{f}: the text is empty")
            texts.append(text)
            labels.append(folder.name)
    if not texts:
        raise ValueError(f"{root}: expected one folder per class holding one text per file "
                         f"({root}/<label>/<name>.txt); found no such files")
    if loose or empty:
        skipped = ([f"{len(loose)} file(s) outside the class folders ({', '.join(loose[:3])})"]
                   if loose else []) + ([f"empty folder(s) {empty}"] if empty else [])
        warnings.warn(f"{root}: read {len(texts)} texts in {len(folders) - len(empty)} class "
                      f"folders; not read: {'; '.join(skipped)}", SkippedRowsWarning, stacklevel=2)
    return texts, labels
