"""Tokenizers, Vocabulary, pad_batch, batches and lm_batches (NumPy data handling, no backend)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from xprnn.text import Vocabulary, english_stopwords, tokenize_chars, tokenize_words
from xprnn.text.batching import batches, lm_batches, pad_batch

# Reviews shown in the seed notebook (rows 1, 3, 4, 49995 and 49998 of its CSV, first sentences).
NOTEBOOK = {
    "A wonderful little production. <br /><br />The filming technique is very unassuming- very "
    "old-time-BBC fashion and gives a comforting, and sometimes discomforting, sense of realism "
    "to the entire piece.": "wonderful little production filming technique unassuming oldtimebbc "
    "fashion gives comforting sometimes discomforting sense realism entire piece",
    "Basically there's a family where a little boy (Jake) thinks there's a zombie in his closet": (
        "basically theres family little boy jake thinks theres zombie closet"
    ),
    'Petter Mattei\'s "Love in the Time of Money" is a visually stunning film': (
        "petter matteis love time money visually stunning film"
    ),
    # The notebook keeps "wasnt" (NLTK lists "wasn't" with its apostrophe); our stop-word list is
    # stripped of apostrophes like the tokens, so "wasnt" is a stop word here.
    "I thought this movie did a down right good job. It wasn't as creative": (
        "thought movie right good job creative"
    ),
    "I'm going to have to disagree with the previous comment and side with Maltin": (
        "im going disagree previous comment side maltin"
    ),
}


@pytest.mark.parametrize("text", NOTEBOOK)
def test_tokenize_words_notebook_examples(text):
    assert tokenize_words(text, stopwords="english", rule="ascii") == NOTEBOOK[text].split()


def test_tokenize_words_ascii_rule():
    def ascii_words(text):
        return tokenize_words(text, rule="ascii")

    assert ascii_words("A<br/>b<BR>c<br />d<br  />e") == ["a", "b", "c", "d", "e"]
    assert ascii_words("Don't  STOP\tme\nnow") == ["dont", "stop", "me", "now"]
    assert ascii_words("Rated 10/10!!! (really)") == ["rated", "really"]
    assert ascii_words("Café Amélie") == ["caf", "amlie"]  # ASCII letters only, as [^a-zA-Z]
    assert ascii_words("clichés of the 21st well-made") == ["clichs", "of", "the", "st",
                                                            "wellmade"]
    assert ascii_words("") == []
    assert ascii_words("... 123 !!!") == []


def test_tokenize_words_unicode_rule_is_the_default():
    # issue 14, case 11: the ASCII rule gave "clichs" and "st"
    assert tokenize_words("Clichés of the 21st century") == ["clichés", "of", "the", "21st",
                                                             "century"]
    assert tokenize_words("A<br/>b<BR>c<br />d<br  />e") == ["a", "b", "c", "d", "e"]
    assert tokenize_words("Don't  STOP\tme\nnow, it’s") == ["dont", "stop", "me", "now", "its"]
    assert tokenize_words("Rated 10/10!!! (really)") == ["rated", "10", "10", "really"]
    assert tokenize_words("Straße STRASSE") == ["strasse", "strasse"]  # casefold, not lower
    assert tokenize_words("Привет, МИР!") == ["привет", "мир"]
    assert tokenize_words("我喜欢这部电影。とても良い") == ["我喜欢这部电影", "とても良い"]
    assert tokenize_words("हिन्दी फ़िल्म") == ["हिन्दी", "फ़िल्म"]  # vowel signs and virama are marks
    assert tokenize_words("e\u0301te\u0301 été") == ["été", "été"]  # NFC
    assert tokenize_words("snake_case well-made 3.5") == ["snake", "case", "well", "made", "3",
                                                          "5"]
    assert tokenize_words("𑄃𑄧𑄇𑄴𑄠 𝐀𝐁") == ["𑄃𑄧𑄇𑄴𑄠", "𝐀𝐁"]  # beyond U+FFFF: marks and letters
    assert tokenize_words("") == [] and tokenize_words("... !!! ___") == []
    assert tokenize_words("I didn't like THE film", stopwords="english") == ["like", "film"]
    with pytest.raises(ValueError, match=r"rule must be one of \('unicode', 'ascii'\)"):
        tokenize_words("x", rule="latin")


def test_tokenize_words_stopwords_forms():
    text = "The movie was not a good movie"
    assert tokenize_words(text) == ["the", "movie", "was", "not", "a", "good", "movie"]
    assert tokenize_words(text, stopwords=["movie", "the"]) == ["was", "not", "a", "good"]
    assert tokenize_words(text, stopwords=iter(["movie"])) == ["the", "was", "not", "a", "good"]
    assert tokenize_words(text, stopwords="english") == ["movie", "good", "movie"]
    with pytest.raises(ValueError, match="got the string 'french'"):
        tokenize_words(text, stopwords="french")
    with pytest.raises(TypeError, match="stopwords must be"):
        tokenize_words(text, stopwords=5)
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        tokenize_words(b"bytes")


def test_english_stopwords_list():
    words = english_stopwords()
    assert isinstance(words, frozenset)
    assert len(words) == 178  # NLTK's 179 minus "it's", which becomes "its"
    assert all(re.fullmatch("[a-z]+", w) for w in words)
    assert {"i", "the", "its", "dont", "wasnt", "shouldve", "not", "no", "wouldnt"} <= words
    assert not {"movie", "good", "bad", "it's", "dont'"} & words


def test_tokenize_chars():
    assert tokenize_chars("ab c\n") == ["a", "b", " ", "c", "\n"]
    assert tokenize_chars("") == []
    with pytest.raises(TypeError, match="got list"):
        tokenize_chars(["a"])


# --- Vocabulary ----------------------------------------------------------------------------------

DOCS = [["b", "a", "b"], ["c", "a", "b"], ["d"]]  # counts: b 3, a 2, c 1, d 1


def test_vocabulary_build_order_and_filters():
    v = Vocabulary.build(DOCS)
    assert v.tokens == ["<pad>", "<unk>", "b", "a", "c", "d"]  # c, d tie: alphabetical
    assert (v.pad_id, v.unk_id, len(v)) == (0, 1, 6)
    assert v.index == {t: i for i, t in enumerate(v.tokens)}
    assert Vocabulary.build(DOCS[::-1]).tokens == v.tokens  # independent of the order seen
    assert Vocabulary.build(DOCS, min_freq=2).tokens == ["<pad>", "<unk>", "b", "a"]
    assert Vocabulary.build(DOCS, max_size=3).tokens == ["<pad>", "<unk>", "b"]
    assert Vocabulary.build([["<unk>", "x"]]).tokens == ["<pad>", "<unk>", "x"]


def test_vocabulary_encode_decode_unknown():
    v = Vocabulary.build(DOCS, min_freq=2)
    assert v.encode(["a", "zzz", "b"]) == [3, 1, 2]
    assert v.decode(np.array([3, 1, 2, 0])) == ["a", "<unk>", "b", "<pad>"]
    assert "a" in v and "zzz" not in v
    with pytest.raises(IndexError, match="id 4 is out of range for a vocabulary of 4"):
        v.decode([4])
    with pytest.raises(IndexError, match="id -1"):
        v.decode([-1])


def test_vocabulary_characters_without_unk():
    v = Vocabulary.build(["abca", "cb"], specials=())  # a str counts as its characters
    assert v.tokens == ["a", "b", "c"] and v.pad_id is None and v.unk_id is None
    assert v.encode("cab") == [2, 0, 1]
    with pytest.raises(KeyError, match="token 'z' is not in the vocabulary"):
        v.encode("abz")
    p = Vocabulary.build(["abca"], specials=("<pad>",))
    assert (p.tokens, p.pad_id, p.unk_id) == (["<pad>", "a", "b", "c"], 0, None)


def test_vocabulary_round_trip():
    v = Vocabulary.build(DOCS, specials=("<pad>",))
    d = json.loads(json.dumps(v.to_dict()))
    w = Vocabulary.from_dict(d)
    assert w == v and w.tokens == v.tokens and w.index == v.index
    assert (w.pad_id, w.unk_id) == (0, None)
    assert w.to_dict() == v.to_dict()
    assert v != Vocabulary.build(DOCS)


def test_vocabulary_errors():
    with pytest.raises(ValueError, match="token 'a' appears twice"):
        Vocabulary(["a", "b", "a"])
    with pytest.raises(ValueError, match="max_size must be"):
        Vocabulary.build(DOCS, max_size=1)
    with pytest.raises(ValueError, match="min_freq must be"):
        Vocabulary.build(DOCS, min_freq=0)
    with pytest.raises(TypeError, match="got one str"):
        Vocabulary.build("abc")
    with pytest.raises(TypeError, match="tokens must be str, got 3"):
        Vocabulary.build([[3, 4]])
    with pytest.raises(ValueError, match="unexpected keys"):
        Vocabulary.from_dict({"tokens": ["a"], "size": 1})


# --- pad_batch -----------------------------------------------------------------------------------


def test_pad_batch_pads_right():
    ids, lengths = pad_batch([[1, 2, 3], np.array([4])])
    np.testing.assert_array_equal(ids, [[1, 2, 3], [4, 0, 0]])
    np.testing.assert_array_equal(lengths, [3, 1])
    assert ids.dtype == np.int64 and lengths.dtype == np.int64
    ids, _ = pad_batch([[5], [6, 7]], pad_id=-1)
    np.testing.assert_array_equal(ids, [[5, -1], [6, 7]])


@pytest.mark.parametrize(
    ("truncate", "max_len", "kept"),
    [
        ("head", 4, [1, 2, 3, 4]),
        ("tail", 4, [4, 5, 6, 7]),
        ("both", 4, [1, 2, 6, 7]),
        ("both", 5, [1, 2, 3, 6, 7]),  # ceil(5/2) = 3 from the start, 2 from the end
        ("both", 1, [1]),
        ("tail", 7, [1, 2, 3, 4, 5, 6, 7]),
    ],
)
def test_pad_batch_truncation(truncate, max_len, kept):
    seq = np.arange(1, 8)
    ids, lengths = pad_batch([seq, [9, 9]], max_len=max_len, truncate=truncate)
    assert ids.shape == (2, len(kept))
    np.testing.assert_array_equal(ids[0], kept)
    np.testing.assert_array_equal(lengths, [len(kept), min(2, max_len)])
    np.testing.assert_array_equal(seq, np.arange(1, 8))  # input untouched


def test_pad_batch_width_is_longest_after_truncation():
    ids, lengths = pad_batch([[1, 2], [3, 4, 5]], max_len=10)
    assert ids.shape == (2, 3)
    np.testing.assert_array_equal(lengths, [2, 3])


def test_pad_batch_errors():
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        pad_batch([[1], []])
    with pytest.raises(ValueError, match="sequences is empty"):
        pad_batch([])
    with pytest.raises(TypeError, match="sequence 0 must hold integer ids, got dtype float64"):
        pad_batch([[1.5, 2.0]])
    with pytest.raises(ValueError, match="truncate must be one of"):
        pad_batch([[1]], truncate="middle")
    with pytest.raises(ValueError, match="max_len must be None or an int >= 1, got 0"):
        pad_batch([[1]], max_len=0)
    with pytest.raises(ValueError, match="sequence 0 must be 1-D"):
        pad_batch([[[1, 2]]])


# --- batches -------------------------------------------------------------------------------------


def _data(n=203, seed=1):
    lens = np.random.default_rng(seed).integers(1, 41, size=n)
    # Example i is the id i + 1 repeated: a batch row tells which example it holds.
    return [np.full(k, i + 1) for i, k in enumerate(lens)], lens


def _epoch(it):
    return [(ids.copy(), lengths.copy(), y.copy()) for ids, lengths, y in it]


@pytest.mark.parametrize(("shuffle", "bucket"), [(True, True), (True, False), (False, True)])
def test_batches_cover_every_example_once(shuffle, bucket):
    seqs, lens = _data()
    b = batches(seqs, np.arange(203), batch_size=16, shuffle=shuffle, bucket=bucket)
    assert len(b) == 13  # ceil(203 / 16)
    for _ in range(2):  # two epochs
        got = _epoch(b)
        assert len(got) == 13
        assert sorted(ids.shape[0] for ids, _, _ in got) == [11] + [16] * 12
        ys = np.concatenate([y for _, _, y in got])
        np.testing.assert_array_equal(np.sort(ys), np.arange(203))
        for ids, lengths, y in got:
            np.testing.assert_array_equal(lengths, lens[y])
            assert ids.shape[1] == lengths.max()
            for row, n, i in zip(ids, lengths, y, strict=True):
                assert (row[:n] == i + 1).all() and (row[n:] == 0).all()


def test_batches_reproducible_and_new_order_each_epoch():
    seqs, _ = _data()
    labels = np.arange(203)
    a = batches(seqs, labels, batch_size=16, seed=7)
    b = batches(seqs, labels, batch_size=16, seed=7)
    a0, a1 = _epoch(a), _epoch(a)
    b0, b1 = _epoch(b), _epoch(b)
    for x, y in zip(a0 + a1, b0 + b1, strict=True):
        for u, v in zip(x, y, strict=True):
            np.testing.assert_array_equal(u, v)
    order = [y.tolist() for _, _, y in a0]
    assert order != [y.tolist() for _, _, y in a1]
    other = _epoch(batches(seqs, labels, batch_size=16, seed=8))
    assert order != [y.tolist() for _, _, y in other]


def test_batches_bucketing_reduces_padding():
    seqs, lens = _data(n=1000)
    padded = {}
    for bucket in (True, False):
        b = batches(seqs, np.arange(1000), batch_size=16, seed=3, bucket=bucket)
        padded[bucket] = sum(ids.size for ids, _, _ in b) - int(lens.sum())
    assert padded[True] < padded[False] / 4


def test_batches_unshuffled_order():
    seqs = [[1] * k for k in (3, 1, 2, 5, 4)]
    got = [y.tolist() for _, _, y in batches(seqs, [0, 1, 2, 3, 4], batch_size=2, shuffle=False)]
    assert got == [[1, 2], [0, 4], [3]]  # sorted by length within the single pool
    plain = batches(seqs, [0, 1, 2, 3, 4], batch_size=2, shuffle=False, bucket=False)
    assert [y.tolist() for _, _, y in plain] == [[0, 1], [2, 3], [4]]


def test_batches_max_len_and_no_labels():
    seqs, _ = _data(n=50)
    for ids, lengths, y in batches(seqs, batch_size=8, max_len=5, truncate="tail"):
        assert y is None and ids.shape[1] <= 5 and lengths.max() <= 5


def test_batches_errors():
    with pytest.raises(ValueError, match="sequence 2 is empty"):
        batches([[1], [2], []])
    with pytest.raises(ValueError, match="one entry per sequence"):
        batches([[1], [2]], labels=[0])
    with pytest.raises(TypeError, match="labels_to_ids"):
        batches([[1], [2]], labels=["pos", "neg"])
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        batches([[1]], batch_size=0)
    with pytest.raises(ValueError, match="nothing to batch"):
        batches([])


# --- lm_batches ----------------------------------------------------------------------------------


def test_lm_batches_contiguous_rows_and_shifted_targets():
    stream = np.arange(23)  # 2 rows of 11 ids (0..10 and 11..21); id 22 is dropped
    chunks = list(lm_batches(stream, batch_size=2, seq_len=4))
    assert [x.shape for x, _ in chunks] == [(2, 4), (2, 4), (2, 2)]  # 10 input steps per row
    inputs = np.concatenate([x for x, _ in chunks], axis=1)
    targets = np.concatenate([t for _, t in chunks], axis=1)
    np.testing.assert_array_equal(inputs, [list(range(0, 10)), list(range(11, 21))])
    np.testing.assert_array_equal(targets, [list(range(1, 11)), list(range(12, 22))])
    assert all(x.dtype == np.int64 and t.dtype == np.int64 for x, t in chunks)


def test_lm_batches_from_list_and_errors():
    chunks = list(lm_batches([5, 6, 7], batch_size=1, seq_len=8))
    assert len(chunks) == 1
    np.testing.assert_array_equal(chunks[0][0], [[5, 6]])
    np.testing.assert_array_equal(chunks[0][1], [[6, 7]])
    with pytest.raises(ValueError, match="too few for batch_size=2"):
        lm_batches([1, 2, 3], batch_size=2, seq_len=4)
    with pytest.raises(TypeError, match="1-D sequence of int ids"):
        lm_batches(np.zeros((4, 4), dtype=np.int64), batch_size=1, seq_len=2)
    with pytest.raises(ValueError, match="seq_len must be an int >= 1"):
        lm_batches([1, 2, 3], batch_size=1, seq_len=0)
