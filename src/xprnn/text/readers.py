"""Readers for labelled text: aclImdb (tar.gz or folder), CSV/TSV, one file or one folder per
class, plain text, the shipped sample.

Every problem with a file is a ``ValueError`` that names the file and, where there is one, the
line: a bad data file should say where it is bad, not fail later inside the model. No row is
dropped silently: a reader asked to skip bad rows says so with a :class:`SkippedRowsWarning`.
"""

from __future__ import annotations

import re
import tarfile
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from ._classes import read_class_files, read_folders, read_lines
from ._files import QUOTINGS, SkippedRowsWarning, _check_encoding, _decode, _read_bytes, _read_table

__all__ = ["read_imdb", "read_csv", "read_text", "read_lines", "read_class_files", "read_folders",
           "read_dataset", "labels_to_ids", "load_sample", "SkippedRowsWarning", "QUOTINGS"]

SPLITS = ("train", "test")
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
# A labelled review in the aclImdb layout, e.g. "aclImdb/train/pos/1234_8.txt".
_REVIEW = re.compile(r"(?:^|/)(train|test)/(pos|neg)/([^/]+\.txt)$")
_CSV_OPTIONS = ("text_column", "label_column", "delimiter", "header", "encoding", "quoting",
                "on_bad_rows")


def read_text(path, encoding="utf-8") -> str:
    """The whole text of a file (``.gz`` opened transparently), e.g. for a language model.

    ``encoding`` is UTF-8 by default (a byte-order mark is dropped); undecodable bytes are a
    ``ValueError`` naming the file, line and byte."""
    p, data = _read_bytes(path)
    return _decode(data, encoding, str(p))


# --- aclImdb -------------------------------------------------------------------------------------


def _is_tar(p: Path) -> bool:
    return p.name.lower().endswith(_TAR_SUFFIXES)


def _imdb_from_tar(p: Path, split: str):
    try:
        # Stream mode ("r|*"): members are read in archive order while gunzipping, no seeking.
        with tarfile.open(p, "r|*") as tar:
            for m in tar:
                match = _REVIEW.search(m.name)
                if m.isfile() and match and match.group(1) == split:
                    yield "/".join(match.groups()), tar.extractfile(m).read(), f"{p}: {m.name}"
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{p}: not a readable tar archive ({e})") from None


def _is_imdb_folder(p: Path) -> bool:
    return any((p / name).is_dir() for name in ("aclImdb", *SPLITS))


def _imdb_from_folder(p: Path, split: str):
    root = p / "aclImdb" if (p / "aclImdb").is_dir() else p
    for label in ("neg", "pos"):
        for f in (root / split / label).glob("*.txt"):
            if f.is_file():
                yield f"{split}/{label}/{f.name}", f.read_bytes(), str(f)


def read_imdb(path, split="train", *, with_sources=False, encoding="utf-8"):
    """Labelled reviews of the Large Movie Review Dataset (aclImdb).

    Parameters
    ----------
    path : str or Path
        ``aclImdb_v1*.tar.gz`` (read in place, streaming), an extracted ``aclImdb/`` folder,
        or the folder that holds it.
    split : {"train", "test"}
    with_sources : bool
        Also return each review's file, e.g. ``"train/pos/1234_8.txt"``.
    encoding : str
        Of the review files (UTF-8 by default).

    Returns
    -------
    texts : list of str
    labels : list of int
        1 for ``pos``, 0 for ``neg``.
    sources : list of str
        Only with ``with_sources``.

    Reviews come sorted by file name (all ``neg`` then all ``pos``), the same for the archive
    and the folder; shuffle before training.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    _check_encoding(encoding)
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{p}: no such file or folder")
    if p.is_dir():
        found = _imdb_from_folder(p, split)
    elif p.stat().st_size == 0:
        raise ValueError(f"{p}: the file is empty")
    else:
        found = _imdb_from_tar(p, split)
    rows = []
    for source, data, where in found:
        text = _decode(data, encoding, where)
        if not text.strip():
            raise ValueError(f"{where}: the review is empty")
        rows.append((source, text))
    rows.sort()
    kinds = {source.split("/")[1] for source, _ in rows}
    if kinds != {"neg", "pos"}:
        raise ValueError(
            f"{p}: not an aclImdb layout: expected reviews under aclImdb/{split}/pos/*.txt and "
            f"aclImdb/{split}/neg/*.txt, found {len(rows)} ({', '.join(sorted(kinds)) or 'none'})"
        )
    texts = [t for _, t in rows]
    labels = [int(s.split("/")[1] == "pos") for s, _ in rows]
    return (texts, labels, [s for s, _ in rows]) if with_sources else (texts, labels)


# --- CSV / TSV -----------------------------------------------------------------------------------


def read_csv(
    path,
    text_column="review",
    label_column="sentiment",
    delimiter=None,
    header=True,
    encoding="utf-8",
    quoting=None,
    on_bad_rows="error",
):
    """Texts and labels from a CSV or TSV file (``.gz`` opened transparently).

    Parameters
    ----------
    path : str or Path
    text_column, label_column : str or int
        Column names, or 0-based positions (required when ``header=False``). The defaults
        read the seed notebook's ``review,sentiment`` file.
    delimiter : str, optional
        Tab for ``.tsv``/``.tab`` (also under ``.gz``), else comma.
    header : bool
        Whether the first row names the columns.
    encoding : str
        UTF-8 by default (a byte-order mark is dropped); e.g. ``"cp1252"``.
    quoting : {"none", "csv", "multiline"}, optional
        ``"none"``: quotes are text, one row per line (the default for tab-separated files);
        ``"csv"``: CSV quoting within a line (the default otherwise); ``"multiline"``: quoted
        fields may also span lines. A row running over several lines without ``"multiline"``
        is a bad row: it is what a stray quote does.
    on_bad_rows : {"error", "skip"}
        A bad row (a field count unlike the header's or the first row's, an empty text or
        label, broken quoting) is a ``ValueError`` naming its line, or with ``"skip"`` is left
        out and a :class:`SkippedRowsWarning` gives the rows read, the lines seen and the
        lines skipped.

    Returns
    -------
    texts : list of str
    labels : list of str
        As written, surrounding whitespace stripped; see :func:`labels_to_ids`.
    """
    columns, args = [text_column, label_column], ["text_column", "label_column"]
    texts, labels = _read_table(path, columns, args, delimiter, header, encoding, quoting,
                                on_bad_rows)
    return texts, [label.strip() for label in labels]


def labels_to_ids(labels, classes=None):
    """Class ids for labels, like scikit-learn's ``LabelEncoder``.

    Parameters
    ----------
    labels : iterable
        Class names or numbers.
    classes : sequence, optional
        The classes in id order. By default the sorted distinct labels: ``"negative"`` = 0,
        ``"positive"`` = 1; numbers (and strings that are all whole numbers, such as ratings
        read from a CSV) sort numerically.

    Returns
    -------
    ids : ndarray of int64, shape (N,)
    classes : list
    """
    labels = list(labels)
    if classes is None:
        distinct = set(labels)
        key = None
        if all(isinstance(c, str) and re.fullmatch(r"\s*[+-]?\d+\s*", c) for c in distinct):
            key = int
        try:
            classes = sorted(distinct, key=key)
        except TypeError:
            kinds = sorted({type(c).__name__ for c in distinct})
            raise TypeError(
                f"labels mix types that cannot be sorted ({', '.join(kinds)}); "
                "pass classes= to give the order"
            ) from None
    else:
        classes = list(classes)
        if len(set(classes)) != len(classes):
            raise ValueError(f"classes has duplicates: {classes}")
    index = {c: i for i, c in enumerate(classes)}
    try:
        ids = [index[label] for label in labels]
    except KeyError as e:
        raise ValueError(f"unknown label {e.args[0]!r}; known classes: {classes}") from None
    return np.array(ids, dtype=np.int64), classes


def read_dataset(path, **options):
    """``(texts, labels)`` from an aclImdb archive/folder, a folder per class, or a CSV/TSV file.

    A ``.tar``/``.tar.gz``/``.tgz`` file, or a folder holding ``aclImdb/``, ``train/`` or
    ``test/``, is read with :func:`read_imdb` (options: ``split``, ``with_sources``,
    ``encoding``; labels are 0/1); any other folder with :func:`read_folders` (option:
    ``encoding``; labels are the folder names); anything else with :func:`read_csv` (its
    keyword arguments as options; labels are strings).
    """
    p = Path(path)
    kind = ("imdb" if _is_tar(p) or (p.is_dir() and _is_imdb_folder(p))
            else "folders" if p.is_dir() else "csv")
    allowed = {"imdb": ("split", "with_sources", "encoding"), "folders": ("encoding",),
               "csv": _CSV_OPTIONS}[kind]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        what = {"imdb": "an aclImdb dataset", "folders": "a folder per class",
                "csv": "a CSV/TSV file"}[kind]
        raise TypeError(f"options {unknown} do not apply to {what} ({p}); allowed: {allowed}")
    read = {"imdb": read_imdb, "folders": read_folders, "csv": read_csv}[kind]
    return read(p, **options)


def load_sample():
    """The shipped IMDB demo sample (``xprnn/data/imdb_sample.csv.gz``, see its README).

    3,000 training and 1,000 test reviews of at most 1,000 characters, balanced, all drawn
    from aclImdb's *training* split.

    Returns
    -------
    train_texts, train_labels, test_texts, test_labels : list of str
        Labels are ``"negative"`` or ``"positive"``.
    """
    path = resources.files("xprnn") / "data" / "imdb_sample.csv.gz"
    with resources.as_file(path) as p:
        texts, labels, splits = _read_table(
            p, ["review", "sentiment", "split"], ["review", "sentiment", "split"]
        )
    out = {s: ([], []) for s in SPLITS}
    for text, label, split in zip(texts, labels, splits, strict=True):
        if split not in out:
            raise ValueError(f"{p}: split must be 'train' or 'test', got {split!r}")
        out[split][0].append(text)
        out[split][1].append(label)
    return out["train"][0], out["train"][1], out["test"][0], out["test"][1]
