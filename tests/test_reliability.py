"""Issue 14, real data: no row lost silently (quoting, field counts, skipped rows said),
``--encoding`` for every input, label warnings, one file or one folder per class, several
``--test`` files. Each test failed on the code before the issue."""

from __future__ import annotations

import gzip
import json
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xprnn.cli import main
from xprnn.text import readers


@pytest.fixture(autouse=True)
def _once(backend):
    if backend != "numpy":
        pytest.skip("backend-independent; runs under --backend numpy")


POS = ["great", "superb", "moving", "wonderful", "brilliant"]
NEG = ["awful", "dull", "boring", "terrible", "clumsy"]
TINY = ["--embedding-dim", "8", "--hidden", "8", "--epochs", "1", "--no-progress"]


def _sentences(n, seed=0):
    """``(text, label)`` pairs, the label told by one word; every fourth text opens a quote
    that the line never closes, as in public sentence-per-line data sets."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        text = f"the film was {rng.choice(POS if label else NEG)}"
        if i % 4 == 0:
            text = f'"{text} ," he said'
        elif i % 4 == 1:
            text = f'{text} "really" so'
        rows.append((text, label))
    return rows


def _quoted_tsv(tmp_path, n=1000):
    path = tmp_path / "sentences.txt"
    path.write_text("".join(f"{t}\t{y}\n" for t, y in _sentences(n)), encoding="utf-8")
    return path


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


# -- case 10: no row is lost silently ------------------------------------------------------------


def test_tab_separated_quotes_are_text_by_default(tmp_path):
    path = _quoted_tsv(tmp_path)
    texts, labels = readers.read_csv(path, text_column=0, label_column=1, delimiter="\t",
                                     header=False)
    assert len(texts) == 1000  # was 748: quotes merged 252 lines, labels included, into others
    assert [(t, int(y)) for t, y in zip(texts, labels, strict=True)] == _sentences(1000)


def test_csv_quoting_on_that_file_errors_or_warns_with_the_counts(tmp_path):
    path = _quoted_tsv(tmp_path)
    options = dict(text_column=0, label_column=1, delimiter="\t", header=False, quoting="csv")
    with pytest.raises(ValueError, match=r"sentences\.txt: line 1: .*quoting 'csv'.*--quoting "
                                         r"none"):
        readers.read_csv(path, **options)
    with pytest.warns(readers.SkippedRowsWarning,
                      match=r"read 750 rows from 1000 data lines; skipped 250 bad row\(s\) over "
                            r"250 line\(s\): line 1: .* line 5: .*; and 245 more"):
        texts, _ = readers.read_csv(path, on_bad_rows="skip", **options)
    assert len(texts) == 750


def test_a_stray_quote_in_a_csv_is_an_error_not_a_merge(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('review,sentiment\n"Hi there,positive\nnext one,negative\nlast,positive\n')
    with pytest.raises(ValueError, match=r"line 2: .*quoting"):
        readers.read_csv(path)  # was: 1 row, "Hi there,positive\nnext one,negative\nlast"
    path.write_text('review,sentiment\n"two\nlines",positive\nok,negative\n')
    with pytest.raises(ValueError, match=r"line 2: a quoted field runs on to line 3; .*"
                                         r"quoting='multiline'"):
        readers.read_csv(path)
    assert readers.read_csv(path, quoting="multiline") == (["two\nlines", "ok"],
                                                            ["positive", "negative"])


def test_a_row_with_an_extra_field_is_an_error(tmp_path):
    path = tmp_path / "r.tsv"
    path.write_text("text\tlabel\ngood\tpos\nbad\tfilm\tneg\n")
    with pytest.raises(ValueError, match=r"r\.tsv: line 3: 3 field\(s\), expected 2 as the "
                                         r"header .*does a text hold it"):
        readers.read_csv(path, text_column="text", label_column="label")  # was: label "film"
    with pytest.raises(ValueError, match="quoting must be one of"):
        readers.read_csv(path, text_column="text", label_column="label", quoting="maybe")


def test_cli_reads_every_row_and_says_what_it_skips(tmp_path, capsys):
    path = _quoted_tsv(tmp_path)
    csv_opts = ["--no-header", "--text-column", "0", "--label-column", "1", "--delimiter", r"\t"]
    code, out, _ = _run(capsys, "sentiment", "train", "--data", path, *csv_opts, "--json",
                        "--out", tmp_path / "m", *TINY)
    assert code == 0
    r = json.loads(out)
    assert r["train_size"] + r["valid_size"] == 1000
    code, out, err = _run(capsys, "sentiment", "train", "--data", path, *csv_opts, "--json",
                          "--quoting", "csv", "--skip-bad-rows", "--out", tmp_path / "k", *TINY)
    assert code == 0 and json.loads(out)["train_size"] + json.loads(out)["valid_size"] == 750
    assert "xprnn: warning: --data: " in err and "read 750 rows from 1000 data lines" in err
    code, _, err = _run(capsys, "sentiment", "train", "--data", path, *csv_opts, "--quoting",
                        "csv", "--out", tmp_path / "e", *TINY)
    assert code == 2 and "line 1:" in err and "--quoting none" in err


# -- case 2: --encoding --------------------------------------------------------------------------


def _cp1252_class_files(tmp_path):
    pos, neg = tmp_path / "pos.txt", tmp_path / "neg.txt"
    pos.write_bytes("".join(f"clichés but {w} film\n" for w in POS * 8).encode("cp1252"))
    neg.write_bytes("".join(f"a naïve, {w} film\n" for w in NEG * 8).encode("cp1252"))
    return pos, neg


def test_encoding_option_for_every_input(tmp_path, capsys):
    pos, neg = _cp1252_class_files(tmp_path)
    data = [f"{pos}:positive", f"{neg}:negative"]
    code, _, err = _run(capsys, "sentiment", "train", "--data", *data, "--out", tmp_path / "a",
                        *TINY)
    assert code == 2
    assert (f"--data: {pos}: line 1: byte 0xe9 at offset 5 (byte 6 of the line) cannot be "
            "decoded as utf-8 (invalid continuation byte); pass the file's encoding with "
            "--encoding") in err
    code, out, _ = _run(capsys, "sentiment", "train", "--data", *data, "--encoding", "cp1252",
                        "--json", "--out", tmp_path / "b", *TINY)
    assert code == 0 and json.loads(out)["train_size"] + json.loads(out)["valid_size"] == 80
    csv = tmp_path / "latin.csv"
    csv.write_bytes(("review,sentiment\n" + "".join(
        f"café {w},{y}\n" for y, w in [("pos", "great"), ("neg", "dull")] * 10)).encode("latin-1"))
    code, _, _ = _run(capsys, "sentiment", "eval", "--model", tmp_path / "b", "--data", csv,
                      "--encoding", "latin-1")
    assert code == 2  # the labels pos/neg are not the model's; read, then said so
    code, _, err = _run(capsys, "sentiment", "train", "--data", csv, "--encoding", "klingon")
    assert code == 2 and "--encoding: unknown text encoding 'klingon'" in err
    text = tmp_path / "t.txt"
    text.write_bytes(("ça va, " * 60).encode("cp1252"))
    code, _, err = _run(capsys, "lm", "train", "--text", text, "--level", "char", "--out",
                        tmp_path / "lm", "--hidden", "8", "--layers", "1", "--seq-len", "5",
                        "--batch-size", "2", "--epochs", "1", "--no-progress")
    assert code == 2 and "cannot be decoded as utf-8" in err and "--encoding" in err
    code, _, _ = _run(capsys, "lm", "train", "--text", text, "--level", "char", "--out",
                      tmp_path / "lm", "--hidden", "8", "--layers", "1", "--seq-len", "5",
                      "--batch-size", "2", "--epochs", "1", "--no-progress",
                      "--encoding", "cp1252")
    assert code == 0


def test_byte_order_marks(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffreview,sentiment\nfine,pos\n".encode())
    for encoding in ("utf-8", "utf-8-sig"):
        assert readers.read_csv(path, encoding=encoding) == (["fine"], ["pos"])
    path.write_bytes("review,sentiment\nfine,pos\n".encode("utf-16"))
    with pytest.raises(ValueError, match=r"byte 0xff at offset 0 .* e\.g\. utf-16"):
        readers.read_csv(path)
    assert readers.read_csv(path, encoding="utf-16") == (["fine"], ["pos"])


# -- case 7: label checks ------------------------------------------------------------------------


def test_label_warnings(tmp_path, capsys):
    rows = ["sentence\tlabel"] + [f"the film was {w}\tpositive" for w in POS * 10]
    rows += [f"the film was {w}\tnegative" for w in NEG * 10]
    rows += ["a great film\tPositive", "a great one\tPositive", "odd\tneutral"]
    path = tmp_path / "l.tsv"
    path.write_text("\n".join(rows) + "\n")
    code, _, err = _run(capsys, "sentiment", "train", "--data", path, "--no-header",
                        "--text-column", "0", "--label-column", "1", "--out", tmp_path / "m",
                        *TINY)
    assert code == 0
    assert (f"warning: --data {path}: the first data row ('sentence', 'label') looks like a "
            "header") in err and "drop --no-header" in err
    assert ("warning: --data: labels 'Positive' (2 rows) and 'positive' (50 rows) differ only "
            "in case or spacing, so they are 2 separate classes") in err
    assert ("class(es) with fewer than 5 examples: 'Positive' (2), 'label' (1), 'neutral' (1) "
            "of 104 rows") in err


# -- case 11: one file or one folder per class, several --test files -----------------------------


def test_class_files_and_folders(tmp_path):
    pos, neg = _cp1252_class_files(tmp_path)
    texts, labels = readers.read_class_files([(pos, "1"), (neg, "0")], encoding="cp1252")
    assert len(texts) == 80 and texts[0] == "clichés but great film" and labels[:1] == ["1"]
    assert labels.count("0") == 40
    root = tmp_path / "corpus"
    for label, words in (("happy", POS), ("sad", NEG), ("meh", ["fine"])):
        (root / label).mkdir(parents=True)
        for i, w in enumerate(words):
            (root / label / f"{i}.txt").write_text(f"a {w} day\n")
    (root / "README").write_text("about\n")
    (root / ".hidden").mkdir()
    with pytest.warns(readers.SkippedRowsWarning, match=r"read 11 texts in 3 class folders; "
                                                        r"not read: 1 file\(s\) outside"):
        texts, labels = readers.read_folders(root)
    assert sorted(set(labels)) == ["happy", "meh", "sad"] and texts[0] == "a great day\n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", readers.SkippedRowsWarning)
        assert readers.read_dataset(root) == (texts, labels)
    with pytest.raises(ValueError, match=r"happy: expected one folder per class .*found no "
                                         r"such files"):
        readers.read_folders(root / "happy")  # files, but no class folders


def test_cli_class_files_folders_and_several_tests(tmp_path, capsys):
    pos, neg = _cp1252_class_files(tmp_path)
    root = tmp_path / "folders"
    for label, words in (("positive", POS), ("negative", NEG)):
        (root / label).mkdir(parents=True)
        for i, w in enumerate(words * 2):
            (root / label / f"{i}.txt").write_text(f"the film was {w}")
    code, out, _ = _run(capsys, "sentiment", "train", "--data", f"{pos}:positive",
                        f"{neg}:negative", "--encoding", "cp1252", "--test", root,
                        f"{pos}:positive", "--json", "--out", tmp_path / "m", *TINY)
    assert code == 0
    r = json.loads(out)
    assert r["train_size"] + r["valid_size"] == 80 and r["test_size"] == 60
    assert [(t["data"], t["size"]) for t in r["tests"]] == [(str(root), 20),
                                                            (f"{pos}:positive", 40)]
    both = (r["tests"][0]["accuracy"] * 20 + r["tests"][1]["accuracy"] * 40) / 60
    assert r["test_accuracy"] == pytest.approx(both)
    code, out, _ = _run(capsys, "sentiment", "eval", "--model", tmp_path / "m", "--data", root,
                        f"{pos}:positive", "--encoding", "cp1252")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4
    assert lines[0].endswith(f"(20 texts, {root})") and lines[2].endswith("(60 texts, all)")
    # 60 texts of one word each: the GRU adds nothing the n-grams lack, so the saved classifier
    # is the n-gram model alone (cli/_blend.py's decide), and eval says so
    assert lines[3].startswith("(its bag-of-n-grams model alone: the gru did not add to it in "
                               "training; the gru alone: accuracy")
    code, _, err = _run(capsys, "sentiment", "train", "--data", f"{pos}:positive",
                        "--delimiter", ";", "--out", tmp_path / "x")
    assert code == 2 and "--delimiter apply to CSV/TSV files, not to a FILE:LABEL file" in err


# -- fuzz: only ValueError escapes the readers, and with quotes as text no row is lost -----------

_NEWLINE = re.compile(r"\r\n|\r|\n")


def test_fuzz_readers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")

    @settings(max_examples=300, deadline=None, database=None)
    @given(text=st.text(alphabet='ab ,;\t"\'\n\r\\é\x00', max_size=60), raw=st.binary(max_size=40),
           use_raw=st.booleans(), delimiter=st.sampled_from([",", "\t", ";"]),
           quoting=st.sampled_from([None, *readers.QUOTINGS]), header=st.booleans(),
           skip=st.booleans(), encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]),
           suffix=st.sampled_from([".csv", ".tsv", ".csv.gz"]))
    def check(text, raw, use_raw, delimiter, quoting, header, skip, encoding, suffix):
        path = folder / f"f{suffix}"
        data = raw if use_raw else text.encode(encoding)
        path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", readers.SkippedRowsWarning)
            try:
                texts, labels = readers.read_csv(
                    path, text_column=0, label_column=1, delimiter=delimiter, header=header,
                    encoding=encoding, quoting=quoting, on_bad_rows="skip" if skip else "error")
            except ValueError as e:
                assert str(path) in str(e) or "encoding" in str(e)
                texts = None
            try:
                lines = readers.read_lines(path, encoding=encoding)
            except ValueError:
                lines = None
        if texts is not None and quoting == "none" and not skip and not use_raw:
            records = [line for line in _NEWLINE.split(text) if line != ""]
            assert len(texts) == len(records) - header  # one row per line, none lost
            assert len(texts) == len(labels)
        if lines is not None and not use_raw:
            assert lines == [line for line in _NEWLINE.split(text.removeprefix("\ufeff"))
                             if line.strip()]

    check()


# -- case 11: a Unicode-aware tokenizer, the ASCII rule kept for the models that used it ---------


def _accented(tmp_path):
    path = tmp_path / "accents.csv"
    rows = [f"{POS[i % 5] if i % 2 else NEG[i % 5]} clichés of the 21st Straße,{i % 2}"
            for i in range(40)]
    path.write_text("review,sentiment\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _saved_meta(folder):
    from xprnn.checkpoint import load

    return load(folder).meta


def test_cli_tokenizer_rule_is_saved_and_used(tmp_path, capsys):
    data = _accented(tmp_path)
    for rule, words, absent in [(None, {"clichés", "21st", "strasse"}, {"clichs", "st"}),
                                ("ascii", {"clichs", "st", "strae"}, {"clichés", "21st"})]:
        out = tmp_path / f"m-{rule}"
        code, _, _ = _run(capsys, "sentiment", "train", "--data", data, "--out", out, *TINY,
                          *(["--tokenizer", rule] if rule else []))
        assert code == 0
        meta = _saved_meta(out)
        assert meta["tokenizer"]["rule"] == (rule or "unicode")
        tokens = set(meta["vocab"]["tokens"])
        assert words <= tokens and not absent & tokens, tokens


def _rewrite_meta(folder, meta):
    import safetensors
    import safetensors.numpy as st_numpy

    file = folder / "model.safetensors"
    with safetensors.safe_open(file, framework="numpy") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    st_numpy.save_file(tensors, file, metadata={**metadata, "meta": json.dumps(meta)})


def test_models_saved_before_the_rule_keep_the_ascii_rule(tmp_path, capsys):
    out = tmp_path / "m"
    code, _, _ = _run(capsys, "sentiment", "train", "--data", _accented(tmp_path), "--out", out,
                      "--tokenizer", "ascii", *TINY)
    assert code == 0
    meta = _saved_meta(out)
    text = "superb clichés of the 21st Straße"

    def predicted(rule):
        tokenizer = {k: v for k, v in meta["tokenizer"].items() if k != "rule"}
        _rewrite_meta(out, {**meta, "tokenizer": {**tokenizer, **({"rule": rule} if rule
                                                                  else {})}})
        code, stdout, _ = _run(capsys, "sentiment", "predict", "--model", out, "--json", text)
        assert code == 0
        return json.loads(stdout)["probabilities"]

    old, ascii_rule, unicode_rule = predicted(None), predicted("ascii"), predicted("unicode")
    assert old == ascii_rule and old != unicode_rule
    _rewrite_meta(out, {**meta, "tokenizer": {**meta["tokenizer"], "rule": "latin"}})
    code, _, err = _run(capsys, "sentiment", "predict", "--model", out, text)
    assert code == 2 and "the saved tokenizer is malformed" in err


def test_export_spells_out_the_rule_the_model_was_trained_with(tmp_path, capsys):
    pytest.importorskip("onnx")
    data = _accented(tmp_path)
    for rule in ("unicode", "ascii", None):
        out = tmp_path / f"m-{rule}"
        code, _, _ = _run(capsys, "sentiment", "train", "--data", data, "--out", out, *TINY,
                          "--tokenizer", rule or "ascii")
        if rule is None:  # a model saved before there was a choice
            meta = _saved_meta(out)
            del meta["tokenizer"]["rule"]
            _rewrite_meta(out, meta)
        code, _, _ = _run(capsys, "sentiment", "export", "--model", out, "--out",
                          tmp_path / f"{rule}.onnx")
        assert code == 0
        spec = json.loads((tmp_path / f"{rule}.json").read_text(encoding="utf-8"))["tokenizer"]
        if rule == "unicode":
            assert spec["token_pattern"] == r"[\p{L}\p{N}\p{M}]+" and "casefold" in str(spec)
        else:
            assert (spec["rule"], spec["drop_pattern"]) == ("ascii", r"[^a-z\s]")


def test_a_run_saved_before_the_rule_resumes_with_the_ascii_rule(tmp_path, capsys):
    import safetensors
    import safetensors.numpy as st_numpy

    out = tmp_path / "m"
    code, _, _ = _run(capsys, "sentiment", "train", "--data", _accented(tmp_path), "--out", out,
                      "--tokenizer", "ascii", *TINY)
    assert code == 0
    state = out / "training_state.safetensors"  # made as the code before the option wrote it
    with safetensors.safe_open(state, framework="numpy") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    meta = json.loads(metadata["model_meta"])
    del meta["tokenizer"]["rule"], meta["options"]["tokenizer"]
    st_numpy.save_file(tensors, state, metadata={**metadata, "model_meta": json.dumps(meta)})
    code, _, err = _run(capsys, "sentiment", "train", "--resume", out, "--epochs", "2",
                        "--no-progress")
    assert code == 0, err
    assert _saved_meta(out)["tokenizer"]["rule"] == "ascii"


# -- case 9: the README's command draws the learning curve, or says how to get it ----------------


def test_cli_says_where_the_learning_curve_is(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    for task, argv in [("sentiment", ["--data", _accented(tmp_path), *TINY]),
                       ("lm", ["--text", _accented(tmp_path), "--level", "char", "--hidden", "8",
                               "--seq-len", "10", "--batch-size", "4", "--epochs", "1",
                               "--no-progress"])]:
        out = tmp_path / task
        code, stdout, _ = _run(capsys, task, "train", *argv, "--out", out)
        assert code == 0
        assert f"learning curve drawn in {out / 'learning_curve.png'}\n" in stdout
        assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
        code, stdout, _ = _run(capsys, task, "train", *argv, "--out", out, "--force", "--json")
        assert json.loads(stdout)["learning_curve"] == str(out / "learning_curve.png")


def test_cli_without_matplotlib_says_how_to_get_the_picture(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    out = tmp_path / "m"
    code, stdout, err = _run(capsys, "sentiment", "train", "--data", _accented(tmp_path),
                             "--out", out, *TINY)
    assert code == 0 and "learning curve drawn" not in stdout
    (note,) = [line for line in err.splitlines() if "matplotlib" in line]
    assert note == (f"xprnn: note: no learning curve picture: matplotlib is not installed; to "
                    f"get {out / 'learning_curve.png'} next time: pip install \"xprnn[plot]\"")
    assert not (out / "learning_curve.png").exists() and (out / "history.json").exists()


ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.DOTALL), text


def test_the_readme_command_installs_what_draws_the_curve():
    blocks, _ = _readme_commands()
    assert len(blocks) == 2 and all(b.count("\n") == 1 for b in blocks)  # two set-up commands
    assert blocks[0].strip() == 'pip install ".[plot]" && xprnn sentiment train'
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")  # no tomllib on 3.10
    assert re.search(r'^plot = \["matplotlib>=', pyproject, re.MULTILINE)
    for page in ("index.md", "tutorials/sentiment.md"):  # the pages that quote it
        assert "pip install . &&" not in (ROOT / "docs" / page).read_text(encoding="utf-8")
    assert 'pip install ".[plot]" && xprnn sentiment train' in (
        ROOT / "docs" / "index.md").read_text(encoding="utf-8")
