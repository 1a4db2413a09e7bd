"""Streaming readers (:mod:`xprnn.text.streaming`): the texts the whole-file readers give, read
one at a time (a generator that has read only what it yielded), with the same errors."""

from __future__ import annotations

import gzip
import io
import warnings

import pytest

from xprnn.text import readers
from xprnn.text.streaming import TextSource, iter_column, iter_lines


@pytest.fixture(autouse=True)
def _once(backend):
    if backend != "numpy":
        pytest.skip("backend-independent; runs under --backend numpy")


def test_lines_as_read_lines_reads_them_with_their_numbers(tmp_path):
    text = "\ufeffone\r\ntwo\n\n  \nthree\rfour\nfive é"
    for encoding in ("utf-8", "utf-16", "cp1252"):
        p = tmp_path / f"{encoding}.txt"
        # UTF-8 with a byte-order mark to drop; UTF-16 writes its own; cp1252 has none
        p.write_bytes((text if encoding == "utf-8" else text[1:]).encode(encoding))
        got = list(iter_lines(p, encoding))
        assert got == [(1, "one"), (2, "two"), (3, ""), (4, "  "), (5, "three"), (6, "four"),
                       (7, "five é")], encoding
        assert [t for _, t in got if t.strip()] == readers.read_lines(p, encoding)
    gz = tmp_path / "a.txt.gz"
    gz.write_bytes(gzip.compress(b"x\ny\n"))
    assert list(iter_lines(gz)) == [(1, "x"), (2, "y")]
    assert list(iter_lines(io.BytesIO(b"s1\ns2"))) == [(1, "s1"), (2, "s2")]
    piped = io.BufferedReader(io.BytesIO(gzip.compress(b"x\ny\n")))  # zcat not needed
    assert list(iter_lines(piped)) == [(1, "x"), (2, "y")]


def test_lines_are_read_as_they_are_asked_for():
    class Endless(io.RawIOBase):  # a stream with no end: reading it all would never return
        def readable(self):
            return True

        def readinto(self, b):
            b[:6] = b"again\n"
            return 6

    lines = iter_lines(io.BufferedReader(Endless()))
    assert [next(lines) for _ in range(3)] == [(1, "again"), (2, "again"), (3, "again")]
    rows = iter_column(io.BufferedReader(Endless()), "again")  # its header names one column
    assert [next(rows) for _ in range(3)] == [(2, "again"), (3, "again"), (4, "again")]


def test_an_undecodable_byte_is_named_by_line_and_offset(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"ok\nfine \xff here\n")
    with pytest.raises(ValueError, match=r"bad.txt: line 2: byte 0xff at offset 8 \(byte 6 of "
                                         r"the line\) cannot be decoded as utf-8"):
        list(iter_lines(p))
    with pytest.raises(ValueError, match="no such file"):
        TextSource(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="is a folder"):
        TextSource(tmp_path)


def test_a_column_as_read_csv_reads_it(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text('review,sentiment\n"a, quoted\nmulti",pos\nplain,neg\n,neg\nx,y,z\nlast,pos\n',
                 encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: a quoted field runs on to line 3"):
        list(iter_column(p))
    with pytest.warns(readers.SkippedRowsWarning, match="skipped 1 bad row"):
        got = list(iter_column(p, quoting="multiline", allow_empty=True, on_bad_rows="skip"))
    assert got == [(2, "a, quoted\nmulti"), (4, "plain"), (5, ""), (7, "last")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = list(iter_column(p, quoting="multiline", on_bad_rows="skip"))
        want, _ = readers.read_csv(p, quoting="multiline", on_bad_rows="skip")
    assert [t for _, t in got] == want
    assert len(caught) == 2 and str(caught[0].message) == str(caught[1].message)
    assert "skipped 2 bad row(s)" in str(caught[0].message)
    tsv = tmp_path / "t.tsv"
    tsv.write_text("id\ttext\n1\tsays \"hi\", twice\n", encoding="utf-8")
    assert list(iter_column(tsv, "text")) == [(2, 'says "hi", twice')]  # tab: quotes are text
    assert list(iter_column(tsv, 1, header=False)) == [(1, "text"), (2, 'says "hi", twice')]
