"""The ``xprnn`` command line, run in-process through ``main([...])``: sentiment train / eval /
predict, lm train / generate, every user-error path (exit 2, ``xprnn: error:``, no traceback),
and ``fit(deadline=...)`` behind ``--max-minutes``.

Models here are tiny (hidden size 8-16, one epoch, a few hundred rows) so the file runs in
seconds. The backend tests run the commands with ``--backend`` set to the backend under test.
"""

from __future__ import annotations

import csv
import json
import math
import time

import numpy as np
import pytest

from xprnn.cli import main


@pytest.fixture(autouse=True)
def _once_unless_backend_specific(request, backend):
    """Tests without ``xp`` run the CLI on NumPy whatever ``--backend`` says: run them once."""
    if backend != "numpy" and "xp" not in request.fixturenames:
        pytest.skip("backend-independent; runs under --backend numpy")


POSITIVE = ["great", "wonderful", "superb", "moving", "brilliant"]
NEGATIVE = ["awful", "boring", "terrible", "dull", "clumsy"]
FILLER = ["the", "film", "plot", "actor", "scene", "story", "was", "it", "and", "a"]
TINY = ["--embedding-dim", "8", "--hidden", "8", "--epochs", "1", "--no-progress"]


def _reviews(n, seed):
    """``n`` reviews whose label is told by one sentiment word among filler words."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = ("neg", "pos")[i % 2]
        words = list(rng.choice(FILLER, size=int(rng.integers(3, 9))))
        words.insert(int(rng.integers(0, len(words) + 1)),
                     str(rng.choice(POSITIVE if label == "pos" else NEGATIVE)))
        rows.append((" ".join(words).capitalize() + ".", label))
    return rows


def _write_csv(path, rows, header=("review", "sentiment"), delimiter=","):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter)
        if header:
            w.writerow(header)
        w.writerows(rows)
    return str(path)


@pytest.fixture
def data(tmp_path):
    """A training and a test CSV of synthetic reviews."""
    return (_write_csv(tmp_path / "train.csv", _reviews(200, 0)),
            _write_csv(tmp_path / "test.csv", _reviews(60, 1)))


def _run(capsys, *argv):
    """``(exit status, stdout, stderr)``; any traceback would fail the test by raising."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- sentiment -----------------------------------------------------------------------------------


def test_sentiment_train_eval_predict(tmp_path, data, capsys, monkeypatch):
    from xprnn.cli import _blend

    # weights of a GRU that adds to the n-grams (these data are told by single words, so a real
    # one never earns a weight): the check of predict below then involves both models
    choice = _blend.Choice(0.7, 1.2, 0.05, 0.01, True)
    monkeypatch.setattr(_blend, "decide", lambda lp, lq, y, z=_blend.MIN_Z: choice)
    train, test = data
    out = tmp_path / "model"
    code, stdout, _ = _run(capsys, "sentiment", "train", "--data", train, "--test", test,
                           "--out", out, "--json", *TINY)
    assert code == 0
    (r,) = _json_lines(stdout)  # --json: one object and nothing else on stdout
    assert (r["train_size"], r["valid_size"], r["test_size"]) == (180, 20, 60)
    assert r["epochs"] == 1 and r["best_epoch"] == 1
    assert 0 <= r["valid_accuracy"] <= 1 and 0 <= r["test_accuracy"] <= 1
    for name in ("model.safetensors", "config.json", "history.json", "learning_curve.png"):
        assert (out / name).is_file(), name
    history = json.loads((out / "history.json").read_text())
    assert len(history["epochs"]) == 1 and history["options"]["hidden"] == 8
    meta = json.loads((out / "config.json").read_text())["meta"]
    assert meta["task"] == "sentiment" and meta["classes"] == ["neg", "pos"]
    assert len(meta["vocab"]["tokens"]) == r["vocab_size"]

    # the saved model, reloaded, gives the accuracy measured right after training
    code, stdout, _ = _run(capsys, "sentiment", "eval", "--model", out, "--data", test, "--json")
    assert code == 0
    (e,) = _json_lines(stdout)
    assert e["size"] == 60
    assert e["accuracy"] == r["test_accuracy"]
    assert e["loss"] == pytest.approx(r["test_loss"], rel=1e-6)

    texts = ["A great and moving film.", "Awful, dull story."]
    code, stdout, _ = _run(capsys, "sentiment", "predict", "--model", out, *texts, "--json")
    assert code == 0
    preds = _json_lines(stdout)
    assert [p["text"] for p in preds] == texts
    from xprnn.backend import to_numpy
    from xprnn.checkpoint import load
    from xprnn.text import Vocabulary, tokenize_words
    from xprnn.text.ngrams import NgramTable

    # the saved classifier blends the GRU with the baseline: p ~ p_gru^a * p_ngrams^b
    model, bow = load(out), load(out / "ngrams")
    a, b = bow.meta["weights"]
    assert [a, b] == [r["blend"]["recurrent_weight"], r["blend"]["ngram_weight"]] == [0.7, 1.2]
    vocab = Vocabulary.from_dict(model.meta["vocab"])
    table = NgramTable(bow.meta["ngrams"], bow.meta["n"])
    code, stdout, _ = _run(capsys, "sentiment", "predict", "--model", out, *texts, "--json",
                           "--no-blend")
    alone = _json_lines(stdout)
    for p, q, text in zip(preds, alone, texts, strict=True):
        tokens = tokenize_words(text)
        ids, grams = vocab.encode(tokens), table.encode(tokens)
        p_gru = to_numpy(model.predict_proba([ids], [len(ids)]))[0].astype(np.float64)
        p_ngrams = to_numpy(bow.predict_proba([grams], [len(grams)]))[0].astype(np.float64)
        want = p_gru ** a * p_ngrams ** b
        want /= want.sum()
        assert p["label"] == ["neg", "pos"][int(np.argmax(want))]
        assert p["probability"] == pytest.approx(want.max(), rel=1e-5)
        assert sum(p["probabilities"].values()) == pytest.approx(1.0)
        assert q["probability"] == pytest.approx(p_gru.max(), rel=1e-6)  # --no-blend: alone

    code, stdout, _ = _run(capsys, "sentiment", "predict", "--model", out, *texts)
    assert code == 0
    lines = stdout.splitlines()
    assert len(lines) == 2 and lines[0].split("\t")[0] == preds[0]["label"]


def test_sentiment_learns_the_synthetic_task(tmp_path, data, capsys):
    train, test = data
    code, stdout, _ = _run(capsys, "sentiment", "train", "--data", train, "--test", test,
                           "--out", tmp_path / "m", "--json", "--embedding-dim", "8",
                           "--hidden", "8", "--epochs", "8", "--lr", "0.03", "--pooling", "max",
                           "--min-freq", "1", "--no-progress")
    assert code == 0
    assert _json_lines(stdout)[0]["test_accuracy"] >= 0.95


def test_sentiment_summary_for_people(tmp_path, data, capsys):
    train, test = data
    code, stdout, _ = _run(capsys, "sentiment", "train", "--data", train, "--test", test,
                           "--valid-fraction", "0", "--out", tmp_path / "m", *TINY)
    assert code == 0
    assert "epoch 1" in stdout and "test accuracy" in stdout and "train size 200" in stdout
    assert f"model saved to {tmp_path / 'm'}" in stdout
    assert (tmp_path / "m" / "model.safetensors").is_file()  # saved without a validation set


def test_sentiment_sample_with_limit(tmp_path, capsys):
    code, stdout, _ = _run(capsys, "sentiment", "train", "--limit", "100", "--out",
                           tmp_path / "m", "--json", *TINY)
    assert code == 0
    (r,) = _json_lines(stdout)
    assert (r["train_size"], r["valid_size"], r["test_size"]) == (90, 10, 100)
    meta = json.loads((tmp_path / "m" / "config.json").read_text())["meta"]
    assert meta["classes"] == ["negative", "positive"]


def test_sentiment_csv_options(tmp_path, capsys):
    rows = [(label, text) for text, label in _reviews(40, 2)]
    tsv = _write_csv(tmp_path / "d.tsv", rows, header=None, delimiter="\t")
    semi = _write_csv(tmp_path / "d.txt", rows, header=("label", "text"), delimiter=";")
    for extra in (["--data", tsv, "--no-header", "--text-column", "1", "--label-column", "0"],
                  ["--data", semi, "--delimiter", ";", "--text-column", "text",
                   "--label-column", "label"]):
        code, stdout, err = _run(capsys, "sentiment", "train", *extra, "--out", tmp_path / "m",
                                 "--force", "--json", *TINY)
        assert code == 0, err
        assert _json_lines(stdout)[0]["train_size"] == 36


def test_max_minutes_stops_cleanly(tmp_path, data, capsys):
    train, _ = data
    code, stdout, _ = _run(capsys, "sentiment", "train", "--data", train, "--out",
                           tmp_path / "m", "--json", "--max-minutes", "0.002", *TINY[:-3],
                           "--epochs", "50", "--batch-size", "4", "--no-progress")
    assert code == 0
    (r,) = _json_lines(stdout)
    # 0.12 s: far less than 50 epochs take (and maybe even less than the set-up before epoch 1)
    assert r["epochs"] < 50 and "time limit" in r["stop_reason"]
    assert (tmp_path / "m" / "model.safetensors").is_file()


# -- language models -----------------------------------------------------------------------------

TEXT = "the cat sat on the mat. the dog sat on the log. " * 30


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "text.txt"
    p.write_text(TEXT, encoding="utf-8")
    return str(p)


LM_TINY = ["--hidden", "16", "--layers", "1", "--seq-len", "10", "--batch-size", "4",
           "--epochs", "1", "--no-progress"]


def test_lm_char_train_and_generate(tmp_path, text_file, capsys):
    out = tmp_path / "lm"
    code, stdout, _ = _run(capsys, "lm", "train", "--text", text_file, "--level", "char",
                           "--out", out, "--json", *LM_TINY)
    assert code == 0
    (r,) = _json_lines(stdout)
    n_valid = round(len(TEXT) * 0.1)
    assert (r["train_tokens"], r["valid_tokens"]) == (len(TEXT) - n_valid, n_valid)
    assert r["vocab_size"] == len(set(TEXT))
    assert r["valid_perplexity"] == pytest.approx(math.exp(r["valid_loss"]))
    assert r["valid_bits_per_char"] == pytest.approx(r["valid_loss"] / math.log(2))
    for name in ("model.safetensors", "config.json", "history.json", "learning_curve.png"):
        assert (out / name).is_file(), name

    argv = ["lm", "generate", "--model", out, "--prompt", "the ", "--length", "25", "--seed", "3"]
    code, first, _ = _run(capsys, *argv)
    assert code == 0
    text = first.removesuffix("\n")
    assert text.startswith("the ") and len(text) == 4 + 25 and set(text) <= set(TEXT)
    assert _run(capsys, *argv)[1] == first  # same seed, same text
    code, greedy, _ = _run(capsys, "lm", "generate", "--model", out, "--prompt", "t",
                           "--length", "5", "--greedy")
    assert code == 0 and len(greedy.removesuffix("\n")) == 6


def test_lm_char_model_learns_a_repeating_text(tmp_path, capsys):
    p = tmp_path / "abc.txt"
    p.write_text("abcd" * 200, encoding="utf-8")
    out = tmp_path / "lm"
    code, _, _ = _run(capsys, "lm", "train", "--text", p, "--level", "char", "--out", out,
                      "--hidden", "16", "--layers", "1", "--seq-len", "20", "--batch-size", "4",
                      "--epochs", "15", "--lr", "0.02", "--no-progress", "--json")
    assert code == 0
    code, stdout, _ = _run(capsys, "lm", "generate", "--model", out, "--prompt", "ab",
                           "--length", "10", "--greedy")
    assert stdout == "ab" + "cdabcdabcd" + "\n"


def test_lm_word_train_and_generate(tmp_path, text_file, capsys):
    out = tmp_path / "lm"
    code, stdout, _ = _run(capsys, "lm", "train", "--text", text_file, "--level", "word",
                           "--out", out, "--json", *LM_TINY)
    assert code == 0
    (r,) = _json_lines(stdout)
    words = TEXT.split()
    n_valid = round(len(words) * 0.1)
    assert (r["train_tokens"], r["valid_tokens"]) == (len(words) - n_valid, n_valid)
    assert r["vocab_size"] == len(set(words)) + 1  # and <unk>
    assert "valid_bits_per_word" in r

    code, stdout, err = _run(capsys, "lm", "generate", "--model", out, "--prompt",
                             "the zebra", "--length", "6", "--seed", "0")
    assert code == 0
    generated = stdout.split()
    assert generated[:2] == ["the", "zebra"] and len(generated) == 2 + 6
    assert set(generated[2:]) <= set(words) | {"<unk>"}
    assert "zebra" in err and "<unk>" in err  # the unknown word is reported


# -- backends ------------------------------------------------------------------------------------


def _cli_backend(backend):
    """The ``--backend`` (and ``--device``) options that select the backend under test."""
    if backend == "array_api_strict_device":
        return ["--backend", "array_api_strict", "--device", "device1"]
    if backend == "jax":
        pytest.skip("the command line has no jax backend (--backend numpy, cupy, torch or "
                    "array_api_strict)")
    return ["--backend", backend]


def test_train_and_predict_on_the_backend_under_test(tmp_path, data, capsys, xp, backend):
    train, test = data
    out = tmp_path / "m"
    on_backend = _cli_backend(backend)
    code, stdout, err = _run(capsys, "sentiment", "train", "--data", train, "--out", out,
                             *on_backend, "--dtype", "float64", "--json", *TINY)
    assert code == 0, err
    texts = ["great film", "dull plot"]
    probs = {}
    for b, options in ((backend, on_backend), ("numpy", ["--backend", "numpy"])):
        code, stdout, err = _run(capsys, "sentiment", "predict", "--model", out, *options,
                                 *texts, "--json")
        assert code == 0, err
        probs[b] = [p["probability"] for p in _json_lines(stdout)]
    np.testing.assert_allclose(probs[backend], probs["numpy"], rtol=1e-10)

    short = tmp_path / "short.txt"  # 45 steps a row: torch and array-api-strict are slow at B=4
    short.write_text(TEXT[:200], encoding="utf-8")
    code, _, err = _run(capsys, "lm", "train", "--text", short, "--level", "char", "--out",
                        tmp_path / "lm", *on_backend, *LM_TINY)
    assert code == 0, err
    code, stdout, err = _run(capsys, "lm", "generate", "--model", tmp_path / "lm", *on_backend,
                             "--prompt", "the", "--length", "5", "--seed", "1")
    assert code == 0, err
    assert len(stdout.removesuffix("\n")) == 8


# -- user errors ---------------------------------------------------------------------------------


def _error(capsys, *argv):
    code, out, err = _run(capsys, *argv)
    assert code == 2, (out, err)
    assert "xprnn: error:" in err and "Traceback" not in err
    return err


def test_error_missing_data_file(tmp_path, capsys):
    err = _error(capsys, "sentiment", "train", "--data", tmp_path / "nope.csv", "--out", tmp_path)
    assert "nope.csv" in err and "no such file" in err


def test_error_bad_column(tmp_path, data, capsys):
    err = _error(capsys, "sentiment", "train", "--data", data[0], "--text-column", "body",
                 "--out", tmp_path / "m", *TINY)
    assert "no column 'body'" in err and "review" in err  # names what the header has


def test_error_no_header_needs_positions(tmp_path, data, capsys):
    err = _error(capsys, "sentiment", "train", "--data", data[0], "--no-header", "--out",
                 tmp_path / "m")
    assert "--no-header" in err and "--text-column" in err


def test_error_unknown_label_in_test(tmp_path, data, capsys):
    bad = _write_csv(tmp_path / "bad.csv", [("fine film", "pos"), ("so so", "meh")])
    err = _error(capsys, "sentiment", "train", "--data", data[0], "--test", bad, "--out",
                 tmp_path / "m", *TINY)
    assert "--test" in err and "unknown label 'meh'" in err and "'neg', 'pos'" in err
    assert not (tmp_path / "m").exists()  # checked before any training


def test_error_unknown_label_in_eval(tmp_path, data, capsys):
    out = tmp_path / "m"
    assert _run(capsys, "sentiment", "train", "--data", data[0], "--out", out, *TINY)[0] == 0
    bad = _write_csv(tmp_path / "bad.csv", [("fine film", "good")])
    assert "unknown label 'good'" in _error(capsys, "sentiment", "eval", "--model", out,
                                            "--data", bad)


def test_error_bad_backend(capsys):
    err = _error(capsys, "sentiment", "predict", "--model", "m", "--backend", "jax", "hi")
    assert "--backend" in err and "jax" in err


def test_error_missing_cupy(capsys, tmp_path):
    try:
        import cupy  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("cupy is installed")
    err = _error(capsys, "lm", "train", "--text", tmp_path / "t.txt", "--level", "char",
                 "--backend", "cupy", "--out", tmp_path / "m")
    assert "cupy" in err and "cannot be imported" in err


def test_error_bad_device(capsys, tmp_path, data):
    err = _error(capsys, "sentiment", "train", "--data", data[0], "--device", "gpu7",
                 "--out", tmp_path / "m")
    assert "--device 'gpu7'" in err


@pytest.mark.parametrize("command", [["sentiment", "eval", "--data", "x.csv"],
                                     ["sentiment", "predict", "hello"],
                                     ["lm", "generate"]])
def test_error_missing_model_dir(tmp_path, capsys, command):
    err = _error(capsys, *command[:2], "--model", tmp_path / "absent", *command[2:])
    assert "absent" in err and "no such directory" in err


def test_error_not_a_checkpoint(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    err = _error(capsys, "sentiment", "predict", "--model", tmp_path / "empty", "hi")
    assert "model.safetensors" in err


def test_error_model_of_the_other_task(tmp_path, data, text_file, capsys):
    out = tmp_path / "lm"
    assert _run(capsys, "lm", "train", "--text", text_file, "--level", "char", "--out", out,
                *LM_TINY)[0] == 0
    err = _error(capsys, "sentiment", "predict", "--model", out, "hi")
    assert "expected a 'sentiment' model" in err and "'lm'" in err


def test_error_unknown_prompt_character(tmp_path, text_file, capsys):
    out = tmp_path / "lm"
    assert _run(capsys, "lm", "train", "--text", text_file, "--level", "char", "--out", out,
                *LM_TINY)[0] == 0
    err = _error(capsys, "lm", "generate", "--model", out, "--prompt", "the Zoo")
    assert "['Z']" in err and "never appear" in err


@pytest.mark.parametrize("option, value", [("--epochs", "0"), ("--lr", "-1"),
                                           ("--valid-fraction", "1.5"), ("--hidden", "many")])
def test_error_bad_option_value(tmp_path, capsys, option, value):
    err = _error(capsys, "lm", "train", "--text", "t.txt", "--level", "char", option, value)
    assert option in err and repr(value) in err


def test_error_vocabulary_too_small(tmp_path, data, capsys):
    err = _error(capsys, "sentiment", "train", "--data", data[0], "--max-vocab", "1", "--out",
                 tmp_path / "m")
    assert "--max-vocab 1" in err and "specials" in err


def test_error_text_too_short_for_the_batch(tmp_path, capsys):
    p = tmp_path / "short.txt"
    p.write_text("hello world", encoding="utf-8")
    err = _error(capsys, "lm", "train", "--text", p, "--level", "char", "--out", tmp_path / "m")
    assert "--batch-size 32" in err


def test_error_tie_weights_needs_equal_sizes(tmp_path, text_file, capsys):
    err = _error(capsys, "lm", "train", "--text", text_file, "--level", "char", "--tie-weights",
                 "--embedding-dim", "8", "--hidden", "16", "--out", tmp_path / "m")
    assert "--embedding-dim" in err and "--hidden" in err


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "sentiment" in capsys.readouterr().out
    assert main(["lm", "train", "--help"]) == 0
    assert "--seq-len" in capsys.readouterr().out


# -- fit(deadline=...) ---------------------------------------------------------------------------


def test_fit_deadline_stops_after_the_current_batch(xp, device):
    from xprnn.backend import to_numpy
    from xprnn.models import SequenceClassifier
    from xprnn.optim import Adam
    from xprnn.training import fit

    rng = np.random.default_rng(0)
    batch = (rng.integers(1, 10, size=(4, 5)), np.full(4, 5), np.array([0, 1, 0, 1]))
    seen = []

    class SlowBatches:
        def __iter__(self):
            for i in range(5):
                time.sleep(0.05)  # the deadline passes while the first batch is served
                seen.append(i)
                yield batch

    model = SequenceClassifier(10, 4, 4, 2, seed=0, xp=xp, device=device)
    before = {k: to_numpy(v) for k, v in model.state_dict().items()}
    deadline = time.monotonic() + 0.02
    history = fit(model, SlowBatches(), Adam(lr=0.1), 3, valid=[batch], progress=False,
                  log=None, deadline=deadline)
    assert seen == [0]  # one batch taken, then the epoch ended
    assert len(history.epochs) == 1 and "valid_accuracy" in history.epochs[0]
    assert history.stop_reason == "time limit reached in epoch 1 after 1 steps"
    after = {k: to_numpy(v) for k, v in model.state_dict().items()}
    assert any(not np.array_equal(before[k], after[k]) for k in before)  # the step was kept

    history = fit(model, SlowBatches(), Adam(lr=0.1), 3, progress=False, log=None,
                  deadline=time.monotonic())
    assert history.epochs == [] and history.stop_reason == "time limit reached before epoch 1"


# -- real data -----------------------------------------------------------------------------------


@pytest.mark.data
@pytest.mark.slow
def test_real_imdb(tmp_path, shared_data, capsys):
    # one streaming pass over the 28 MB archive's train split (about 10-20 s): the test split
    # goes through the same reader
    imdb = shared_data / "imdb" / "aclImdb_v1_train_test_text.tar.gz"
    code, stdout, err = _run(capsys, "sentiment", "train", "--data", imdb, "--limit", "200",
                             "--max-len", "100", "--out", tmp_path / "s", "--json", *TINY)
    assert code == 0, err
    (r,) = _json_lines(stdout)
    assert (r["train_size"], r["valid_size"], r["test_size"]) == (180, 20, None)
    meta = json.loads((tmp_path / "s" / "config.json").read_text())["meta"]
    assert meta["classes"] == ["negative", "positive"]


@pytest.mark.data
def test_real_tinyshakespeare(tmp_path, shared_data, capsys):
    text = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:4000]
    p = tmp_path / "shakespeare.txt"
    p.write_text(text, encoding="utf-8")
    code, _, err = _run(capsys, "lm", "train", "--text", p, "--level", "char", "--out",
                        tmp_path / "lm", *LM_TINY)
    assert code == 0, err
    code, stdout, err = _run(capsys, "lm", "generate", "--model", tmp_path / "lm", "--prompt",
                             "First Citizen:", "--length", "40", "--seed", "0")
    assert code == 0, err
    assert stdout.startswith("First Citizen:") and len(stdout.removesuffix("\n")) == 14 + 40
