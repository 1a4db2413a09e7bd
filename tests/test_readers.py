"""Readers: CSV/TSV, plain text, aclImdb (folder and tar.gz), labels, the shipped sample."""

from __future__ import annotations

import csv
import gzip
import io
import tarfile
from importlib import resources

import numpy as np
import pytest

from xprnn.text.readers import (
    labels_to_ids,
    load_sample,
    read_csv,
    read_dataset,
    read_imdb,
    read_text,
)

NOTEBOOK_CSV = (
    "review,sentiment\n"
    '"A wonderful little production. <br /><br />The filming, ""quoted""",positive\n'
    '"Two\nlines",negative\n'
    "\n"  # blank lines are skipped
    "Plain text,positive\n"
)


def _write(path, data: bytes | str):
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# --- CSV / TSV -----------------------------------------------------------------------------------


def test_read_csv_notebook_format(tmp_path):
    path = _write(tmp_path / "movie_reviews.csv", NOTEBOOK_CSV)
    with pytest.raises(ValueError, match=r"line 3: a quoted field runs on to line 4; .*"
                                         r"quoting='multiline'"):
        read_csv(path)  # a row over two lines is what a stray quote does: said, not trusted
    texts, labels = read_csv(path, quoting="multiline")
    assert texts == [
        'A wonderful little production. <br /><br />The filming, "quoted"',
        "Two\nlines",
        "Plain text",
    ]
    assert labels == ["positive", "negative", "positive"]


def test_read_csv_tsv_gz_bom_and_positions(tmp_path):
    tsv = "\ufefflabel\ttext\n 1 \tgood, fine\n0\tbad\n"
    expected = (["good, fine", "bad"], ["1", "0"])
    p = _write(tmp_path / "d.tsv", tsv)
    assert read_csv(p, text_column="text", label_column="label") == expected
    gz = tmp_path / "d.tsv.gz"
    gz.write_bytes(gzip.compress(tsv.encode("utf-8")))
    assert read_csv(gz, text_column="text", label_column="label") == expected
    assert read_csv(gz, text_column=1, label_column=0) == expected
    nohead = _write(tmp_path / "n.txt", "x;good;1\ny;bad;0\n")
    got = read_csv(nohead, text_column=1, label_column=2, delimiter=";", header=False)
    assert got == (["good", "bad"], ["1", "0"])
    latin = _write(tmp_path / "l.csv", "review,sentiment\ncaf\xe9,positive\n".encode("latin-1"))
    assert read_csv(latin, encoding="latin-1") == (["café"], ["positive"])


@pytest.mark.parametrize(
    ("content", "kwargs", "match"),
    [
        (b"", {}, r"x\.csv: the file is empty"),
        (b"  \n\n", {}, "the file is empty"),
        (b"review,sentiment\n", {}, "no data rows after the header"),
        (
            b"\ntext,label\na,b\n",  # header on line 2, after a blank line
            {},
            r"line 2: no column 'review' \(text_column\) in the header; "
            r"columns found: \['text', 'label'\]",
        ),
        (b"review,sentiment\na,positive\nno label here\n", {}, "line 3: 1 field"),
        # the row on line 4 follows a quoted field spanning lines 2-3
        (
            b'review,sentiment\n"a\nb",negative\n  ,positive\n',
            {"quoting": "multiline"},
            "line 4: column 'review' is empty",
        ),
        (b"review,sentiment\na,\n", {}, "line 2: column 'sentiment' is empty"),
        (b"review,sentiment\ngood \xff,positive\n", {}, r"line 2: .*offset 22 .*utf-8"),
        (b"a,b\n", {"header": False}, "text_column must be a 0-based column number"),
        (b"a,b\n", {"text_column": 5}, "text_column=5 but the header has 2 columns"),
        (b"a,b\n", {"delimiter": ";;"}, "delimiter must be one character"),
        (b"a,b\n", {"encoding": "klingon"}, "unknown text encoding 'klingon'"),
    ],
)
def test_read_csv_errors(tmp_path, content, kwargs, match):
    p = _write(tmp_path / "x.csv", content)
    with pytest.raises(ValueError, match=match):
        read_csv(p, **kwargs)


def test_read_csv_missing_folder_and_bad_gzip(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.csv: no such file"):
        read_csv(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="not a file"):
        read_csv(tmp_path)
    with pytest.raises(ValueError, match=r"bad\.csv\.gz: cannot be read"):
        read_csv(_write(tmp_path / "bad.csv.gz", b"this is not gzip"))


def test_read_text(tmp_path):
    assert read_text(_write(tmp_path / "t.txt", "First Citizen:\nBefore we proceed")) == (
        "First Citizen:\nBefore we proceed"
    )
    gz = tmp_path / "t.txt.gz"
    gz.write_bytes(gzip.compress("héllo\n".encode()))
    assert read_text(gz) == "héllo\n"
    with pytest.raises(
        ValueError, match=r"line 3: byte 0x80 at offset 4 \(byte 1 of the line\) cannot be "
                          r"decoded as utf-8 \(invalid start byte\); pass the file's encoding "
                          r"with --encoding"
    ):
        read_text(_write(tmp_path / "b.txt", b"a\nb\n\x80c"))
    with pytest.raises(ValueError, match="the file is empty"):
        read_text(_write(tmp_path / "e.txt", b""))
    with pytest.raises(ValueError, match="no such file"):
        read_text(tmp_path / "missing.txt")


def test_labels_to_ids():
    ids, classes = labels_to_ids(["positive", "negative", "positive"])
    np.testing.assert_array_equal(ids, [1, 0, 1])
    assert ids.dtype == np.int64 and classes == ["negative", "positive"]
    ids, classes = labels_to_ids([10, 2, 1, 2])
    assert classes == [1, 2, 10] and ids.tolist() == [2, 1, 0, 1]
    ids, classes = labels_to_ids(["10", "9", "1"])  # ratings read from a CSV: numeric order
    assert classes == ["1", "9", "10"] and ids.tolist() == [2, 1, 0]
    ids, classes = labels_to_ids(["b", "a"], classes=["b", "a"])
    assert ids.tolist() == [0, 1] and classes == ["b", "a"]
    with pytest.raises(
        ValueError, match=r"unknown label 'neutral'; known classes: \['neg', 'pos'\]"
    ):
        labels_to_ids(["pos", "neutral"], classes=["neg", "pos"])
    with pytest.raises(ValueError, match="classes has duplicates"):
        labels_to_ids(["a"], classes=["a", "a"])
    with pytest.raises(TypeError, match="cannot be sorted"):
        labels_to_ids(["a", 1])


# --- aclImdb -------------------------------------------------------------------------------------

REVIEWS = {  # source -> text; sorted by name: neg/10_2 < neg/2_3 < pos/0_9 < pos/3_7
    "train/pos/3_7.txt": "Fine film.<br /><br />Liked it.",
    "train/pos/0_9.txt": "Great!",
    "train/neg/2_3.txt": "Dull.",
    "train/neg/10_2.txt": "Awful – truly.",
    "test/pos/0_10.txt": "Superb.",
    "test/neg/0_1.txt": "Terrible.",
}


def _imdb_folder(tmp_path, reviews=REVIEWS):
    root = tmp_path / "aclImdb"
    for source, text in reviews.items():
        f = root / source
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(text.encode() if isinstance(text, str) else text)
    (root / "train" / "urls_pos.txt").write_text("http://example\n")
    (root / "imdb.vocab").write_text("the\n")
    return root


def _imdb_tar(tmp_path, root, name="aclImdb_v1.tar.gz"):
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tar:
        tar.add(root, arcname="aclImdb")
    return path


def test_read_imdb_folder_and_tar_agree(tmp_path):
    root = _imdb_folder(tmp_path / "data")
    tar = _imdb_tar(tmp_path, root)
    expected_sources = ["train/neg/10_2.txt", "train/neg/2_3.txt", "train/pos/0_9.txt"]
    expected_sources.append("train/pos/3_7.txt")
    for path in (root, root.parent, tar, str(tar)):
        texts, labels, sources = read_imdb(path, with_sources=True)
        assert sources == expected_sources
        assert texts == [REVIEWS[s] for s in expected_sources]
        assert labels == [0, 0, 1, 1]
    assert read_imdb(tar, split="test") == (["Terrible.", "Superb."], [0, 1])


def test_read_imdb_errors(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        read_imdb(tmp_path, split="valid")
    with pytest.raises(ValueError, match="no such file or folder"):
        read_imdb(tmp_path / "missing.tar.gz")
    with pytest.raises(ValueError, match=r"not an aclImdb layout: expected reviews under"):
        read_imdb(tmp_path)  # an empty folder
    only_pos = _imdb_folder(tmp_path / "p", {"train/pos/0_9.txt": "Great!"})
    with pytest.raises(ValueError, match=r"found 1 \(pos\)"):
        read_imdb(_imdb_tar(tmp_path, only_pos, "p.tar.gz"))
    with pytest.raises(ValueError, match="the file is empty"):
        read_imdb(_write(tmp_path / "empty.tar.gz", b""))
    with pytest.raises(ValueError, match="not a readable tar archive"):
        read_imdb(_write(tmp_path / "junk.tar.gz", b"not a tar at all" * 64))
    bad = _imdb_folder(tmp_path / "b", {**REVIEWS, "train/neg/5_1.txt": b"ok\nbad \xc3("})
    with pytest.raises(ValueError, match=r"aclImdb/train/neg/5_1\.txt: line 2: .*offset 7"):
        read_imdb(_imdb_tar(tmp_path, bad, "b.tar.gz"))
    empty = _imdb_folder(tmp_path / "e", {**REVIEWS, "train/pos/7_8.txt": " "})
    with pytest.raises(ValueError, match=r"train/pos/7_8\.txt: the review is empty"):
        read_imdb(empty)


def test_read_dataset_dispatch(tmp_path):
    root = _imdb_folder(tmp_path / "data")
    tar = _imdb_tar(tmp_path, root)
    assert read_dataset(root) == read_imdb(root)
    assert read_dataset(tar, split="test") == (["Terrible.", "Superb."], [0, 1])
    p = _write(tmp_path / "r.csv", NOTEBOOK_CSV)
    assert read_dataset(p, quoting="multiline") == read_csv(p, quoting="multiline")
    q = _write(tmp_path / "r.tsv", "t\ty\nhi\tpos\n")
    assert read_dataset(q, text_column="t", label_column="y") == (["hi"], ["pos"])
    with pytest.raises(TypeError, match=r"\['text_column'\] do not apply to an aclImdb dataset"):
        read_dataset(tar, text_column="review")
    with pytest.raises(TypeError, match=r"\['split'\] do not apply to a CSV/TSV file"):
        read_dataset(p, split="train")


# --- the shipped sample --------------------------------------------------------------------------


def _sample_rows():
    raw = (resources.files("xprnn") / "data" / "imdb_sample.csv.gz").read_bytes()
    return list(csv.DictReader(io.StringIO(gzip.decompress(raw).decode("utf-8"), newline="")))


def test_load_sample_counts_and_rule():
    train_x, train_y, test_x, test_y = load_sample()
    assert (len(train_x), len(train_y), len(test_x), len(test_y)) == (3000, 3000, 1000, 1000)
    assert (train_y.count("positive"), train_y.count("negative")) == (1500, 1500)
    assert (test_y.count("positive"), test_y.count("negative")) == (500, 500)
    assert max(len(t) for t in train_x + test_x) <= 1000
    assert len(set(train_x)) == 3000 and len(set(test_x)) == 1000  # distinct texts,
    assert not set(train_x) & set(test_x)  # so nothing is both trained on and tested
    rows = _sample_rows()
    assert [r["review"] for r in rows if r["split"] == "train"] == train_x
    sources = [r["source"] for r in rows]
    assert len(set(sources)) == 4000
    for r in rows:  # every review comes from aclImdb's training split, label matching its folder
        folder = {"negative": "neg", "positive": "pos"}[r["sentiment"]]
        assert r["source"].startswith(f"train/{folder}/")


# --- the real archive (../shared/data) -----------------------------------------------------------


@pytest.fixture(scope="module")
def imdb_train(shared_data):
    """The full training split, read once for this module (a few seconds)."""
    return read_imdb(
        shared_data / "imdb" / "aclImdb_v1_train_test_text.tar.gz", "train", with_sources=True
    )


@pytest.mark.data
def test_read_imdb_full_train_split(imdb_train):
    texts, labels, sources = imdb_train
    assert len(texts) == len(labels) == 25_000
    assert sum(labels) == 12_500
    assert sources == sorted(sources) and len(set(sources)) == 25_000
    assert sources[0] == "train/neg/0_3.txt" and sources[-1] == "train/pos/9_7.txt"
    assert sum("<br />" in t for t in texts) > 10_000


@pytest.mark.data
def test_sample_reviews_are_verbatim_training_reviews(imdb_train):
    texts, _, sources = imdb_train
    by_source = dict(zip(sources, texts, strict=True))
    for r in _sample_rows():
        assert by_source[r["source"]] == r["review"]
