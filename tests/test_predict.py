"""``xprnn sentiment predict`` at scale: input from a file, standard input or a CSV/TSV column,
read in chunks (at most one chunk held), batched by length but written in input order with the
probabilities of one batch, blank texts skipped with a warning, ``--output`` whole or not at all,
and under ``mpiexec -n 2`` the same output, byte for byte, as one process.

A tiny model (hidden size 8, one epoch) trained once for the module is enough: what is tested is
where each text's result goes, not how good it is.
"""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from xprnn.cli import _rounds, main

from ._helpers import mpirun, need_mpi
from .test_cli import TINY, _reviews, _write_csv


@pytest.fixture(autouse=True)
def _once(backend):
    if backend != "numpy":
        pytest.skip("backend-independent; runs under --backend numpy")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    data = _write_csv(tmp / "train.csv", _reviews(200, 0))
    out = tmp / "model"
    assert main(["sentiment", "train", "--data", data, "--out", str(out), "--json",
                 "--dtype", "float64", *TINY]) == 0
    return str(out)


def _texts(n, seed=1):
    """``n`` texts of different lengths (a few words to a few dozen)."""
    rng = np.random.default_rng(seed)
    return [" ".join(t for t, _ in _reviews(int(rng.integers(1, 6)), seed + i))
            for i in range(n)]


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _json(text):
    return [json.loads(line) for line in text.splitlines()]


def _lines_file(path, texts):
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    return path


def _leftovers(folder, keep=()):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# -- chunks and order ----------------------------------------------------------------------------


def test_chunks_give_the_one_batch_probabilities_in_input_order(tmp_path, model, capsys):
    from xprnn.backend import to_numpy
    from xprnn.checkpoint import load
    from xprnn.text import Vocabulary, tokenize_words
    from xprnn.text.batching import pad_batch

    texts = _texts(103)
    src = _lines_file(tmp_path / "in.txt", texts)
    runs = {}
    for chunk, batch in ((1000, 1000), (10, 3), (7, 64), (17, 5), (1, 1)):
        code, out, _ = _run(capsys, "sentiment", "predict", "--model", model, "-i", src,
                            "--json", "--chunk-size", chunk, "--batch-size", batch, "--no-blend")
        assert code == 0
        runs[chunk, batch] = out
    rows = _json(runs[1000, 1000])
    for out in runs.values():
        other = _json(out)
        assert [r["text"] for r in other] == texts
        assert [r["line"] for r in other] == list(range(1, 104))
        # float64 round-off at most: a batch of one is a matrix-vector product in BLAS, whose
        # sums run in another order than a matrix product's (the others agree exactly here)
        assert np.allclose([r["probability"] for r in other],
                           [r["probability"] for r in rows], rtol=1e-13, atol=0)
        assert [r["label"] for r in other] == [r["label"] for r in rows]
    # the probabilities of all texts padded into one batch, as predict computed them before
    m = load(model)
    vocab = Vocabulary.from_dict(m.meta["vocab"])
    ids, lengths = pad_batch([vocab.encode(tokenize_words(t)) for t in texts], 400)
    want = to_numpy(m.predict_proba(ids, lengths))
    got = np.array([[r["probabilities"]["neg"], r["probabilities"]["pos"]] for r in rows])
    assert np.array_equal(got, want)  # one chunk, one batch: the very same numbers
    assert len({round(p, 6) for p in got[:, 0]}) > 10  # the texts do get different results


def test_texts_as_arguments_and_tab_separated_rows(model, capsys):
    texts = ["A great and moving film.", "Awful,\tdull\nstory.", "x" * 80]
    code, out, _ = _run(capsys, "sentiment", "predict", "--model", model, *texts)
    assert code == 0
    rows = [line.split("\t") for line in out.splitlines()]
    assert [len(r) for r in rows] == [3, 3, 3]  # tabs and line ends of a text become spaces
    assert [r[2] for r in rows] == [texts[0], "Awful, dull story.", "x" * 80]
    code, js, _ = _run(capsys, "sentiment", "predict", "--model", model, *texts, "--json")
    assert [r["label"] for r in _json(js)] == [r[0] for r in rows]
    assert [f"{r['probability']:.3f}" for r in _json(js)] == [r[1] for r in rows]
    assert [r["line"] for r in _json(js)] == [1, 2, 3]


def test_standard_input(tmp_path, model, capsys, monkeypatch):
    texts = _texts(25)
    src = _lines_file(tmp_path / "in.txt", texts)
    code, want, _ = _run(capsys, "sentiment", "predict", "--model", model, "-i", src)
    assert code == 0
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(src.read_bytes())))
    code, got, _ = _run(capsys, "sentiment", "predict", "--model", model, "-i", "-",
                        "--chunk-size", "4")
    assert code == 0 and got == want and len(got.splitlines()) == 25
    # a CSV option says that standard input is CSV
    table = _write_csv(tmp_path / "in.csv", [(t, "x") for t in texts], header=("text", "y"))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(Path(table).read_bytes())))
    code, got, _ = _run(capsys, "sentiment", "predict", "--model", model, "-i", "-",
                        "--text-column", "text")
    assert code == 0 and got == want


def test_a_csv_column(tmp_path, model, capsys):
    texts = _texts(30)
    texts[3] = 'quoted, with a comma and "quotes"'
    _lines_file(tmp_path / "in.txt", texts)
    code, want, _ = _run(capsys, "sentiment", "predict", "--model", model, "-i",
                         tmp_path / "in.txt", "--json")
    csv_file = _write_csv(tmp_path / "in.csv", [(i, t) for i, t in enumerate(texts)],
                          header=("id", "review"))
    code, got, _ = _run(capsys, "sentiment", "predict", "--model", model, "-i", csv_file,
                        "--json", "--chunk-size", "7")
    assert code == 0
    want, got = _json(want), _json(got)
    assert [r["text"] for r in got] == texts
    assert [r["probabilities"] for r in got] == [r["probabilities"] for r in want]
    assert [r["line"] for r in got] == list(range(2, 32))  # the CSV's lines, header first
    # a TSV without a header, the text in column 1
    _write_csv(tmp_path / "in.tab", [(i, t) for i, t in enumerate(texts)], header=None,
               delimiter="\t")
    code, tsv, err = _run(capsys, "sentiment", "predict", "--model", model, "-i",
                          tmp_path / "in.tab", "--no-header", "--text-column", "1", "--json")
    assert code == 0, err
    assert [r["probabilities"] for r in _json(tsv)] == [r["probabilities"] for r in want]


def test_blank_texts_are_skipped_with_a_warning_naming_them(tmp_path, model, capsys):
    texts = _texts(12)
    lines = texts[:3] + [""] + texts[3:8] + ["   "] + texts[8:]
    src = _lines_file(tmp_path / "in.txt", lines)
    code, out, err = _run(capsys, "sentiment", "predict", "--model", model, "-i", src,
                          "--json", "--chunk-size", "5")
    assert code == 0
    rows = _json(out)
    assert [r["text"] for r in rows] == texts
    assert [r["line"] for r in rows] == [1, 2, 3, 5, 6, 7, 8, 9, 11, 12, 13, 14]
    assert (f"xprnn: warning: skipped 2 blank text(s) ({src}: line(s) 4, 10): nothing to "
            "classify; 12 prediction(s) for 14 text(s)") in err


def test_a_progress_bar_on_stderr_and_empty_input(tmp_path, model, capsys, monkeypatch):
    src = _lines_file(tmp_path / "in.txt", _texts(30))
    code, out, err = _run(capsys, "sentiment", "predict", "--model", model, "-i", src,
                          "--json", "--progress", "--chunk-size", "8")
    assert code == 0
    assert len(_json(out)) == 30  # stdout holds the results alone
    assert "predict: 100%" in err and "30 texts" in err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    code, out, err = _run(capsys, "sentiment", "predict", "--model", model, "-i", "-")
    assert code == 0 and out == ""
    assert "xprnn: warning: <stdin>: no texts to classify" in err


# -- constant memory -----------------------------------------------------------------------------


class _CountingStdin(io.BytesIO):
    """Standard input that counts the lines read from it."""

    def __init__(self, data):
        super().__init__(data)
        self.lines = 0

    def readline(self, *args):
        line = super().readline(*args)
        self.lines += bool(line)
        return line


def test_one_chunk_at_a_time_is_read_classified_and_written(tmp_path, model, monkeypatch):
    n, chunk = 2000, 100
    stdin = _CountingStdin("".join(t + "\n" for t in _texts(n)).encode())
    stdout = io.StringIO()
    monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": stdin})())
    monkeypatch.setattr(sys, "stdout", stdout)
    seen = []
    classify = _rounds.classify

    def spy(model, meta, vocab, texts, batch_size, partner):
        seen.append((stdin.lines, len(stdout.getvalue().splitlines()), len(texts)))
        return classify(model, meta, vocab, texts, batch_size, partner)

    monkeypatch.setattr(_rounds, "classify", spy)
    assert main(["sentiment", "predict", "--model", model, "-i", "-", "--chunk-size",
                 str(chunk)]) == 0
    assert len(seen) == n // chunk
    for k, (read, written, size) in enumerate(seen):
        assert size == chunk
        assert read == (k + 1) * chunk  # no more than this chunk was read ...
        assert written == k * chunk  # ... and every earlier one already written out
    assert len(stdout.getvalue().splitlines()) == n


# -- --output ------------------------------------------------------------------------------------


def test_output_is_written_whole_or_not_at_all(tmp_path, model, capsys, monkeypatch):
    texts = _texts(60)
    src = _lines_file(tmp_path / "in.txt", texts)
    out = tmp_path / "out" / "pred.tsv"
    out.parent.mkdir()
    code, stdout, err = _run(capsys, "sentiment", "predict", "--model", model, "-i", src, "-o",
                             out, "--chunk-size", "8")
    assert code == 0 and stdout == ""
    assert "xprnn: wrote 60 predictions to" in err
    whole = out.read_text(encoding="utf-8")
    assert len(whole.splitlines()) == 60
    assert _leftovers(out.parent) == ["pred.tsv"]
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)  # not the temporary file's mode

    # an undecodable byte after several chunks were written: the old output is kept as it was
    bad = tmp_path / "bad.txt"
    bad.write_bytes(src.read_bytes() + b"caf\xe9 noir\n")
    code, _, err = _run(capsys, "sentiment", "predict", "--model", model, "-i", bad, "-o",
                        out, "--chunk-size", "8")
    assert code == 2
    assert f"xprnn: error: --input: {bad}: line 61: byte 0xe9" in err
    assert out.read_text(encoding="utf-8") == whole
    assert _leftovers(out.parent) == ["pred.tsv"]

    # Ctrl-C in the middle: nothing written, nothing left behind
    out.unlink()
    classify, calls = _rounds.classify, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return classify(*args)

    monkeypatch.setattr(_rounds, "classify", interrupted)
    code, _, err = _run(capsys, "sentiment", "predict", "--model", model, "-i", src, "-o",
                        out, "--chunk-size", "8")
    assert code == 130 and len(calls) == 3
    assert _leftovers(out.parent) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_output_to_a_device_or_through_a_link(tmp_path, model, capsys):
    src = _lines_file(tmp_path / "in.txt", _texts(5))
    fifo = tmp_path / "fifo"  # like /dev/null or /dev/stdout: renaming onto it would replace it
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text(encoding="utf-8")),
                              daemon=True)
    reader.start()
    code, _, err = _run(capsys, "sentiment", "predict", "--model", model, "-i", src, "-o",
                        fifo)
    reader.join(timeout=10)
    assert code == 0, err
    assert stat.S_ISFIFO(fifo.stat().st_mode) and len(got[0].splitlines()) == 5
    target = tmp_path / "real.tsv"
    target.write_text("old\n", encoding="utf-8")
    (tmp_path / "link.tsv").symlink_to(target)
    code, _, _ = _run(capsys, "sentiment", "predict", "--model", model, "-i", src, "-o",
                      tmp_path / "link.tsv")
    assert code == 0
    assert (tmp_path / "link.tsv").is_symlink()  # the link is kept, its target replaced
    assert len(target.read_text(encoding="utf-8").splitlines()) == 5
    if os.path.exists("/dev/full"):  # Linux: every write fails as on a full disk
        code, _, err = _run(capsys, "sentiment", "predict", "--model", model, "-i", src, "-o",
                            "/dev/full")
        assert code == 2
        assert err == ("xprnn: error: --output /dev/full: cannot be written (No space left on "
                       "device)\n")


def test_output_folder_is_checked_before_any_work(tmp_path, model, capsys):
    for target, says in ((tmp_path / "no" / "such" / "p.tsv", "does not exist"),
                         (tmp_path, "is a folder")):
        code, _, err = _run(capsys, "sentiment", "predict", "--model", model, "-i",
                            tmp_path / "missing.txt", "-o", target)
        assert code == 2
        (line,) = err.splitlines()
        assert line.startswith(f"xprnn: error: --output {target}: ") and says in line
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        code, _, err = _run(capsys, "sentiment", "predict", "--model", model, "-i",
                            tmp_path / "missing.txt", "-o", locked / "p.tsv")
        assert code == 2 and "cannot write in the folder" in err


def test_sigterm_leaves_no_temporary_file(tmp_path, model):
    src = _lines_file(tmp_path / "in.txt", _texts(400))
    out = tmp_path / "out"
    out.mkdir()
    code = ("import sys, time; from xprnn.cli import _rounds, main; c = _rounds.classify; "
            "_rounds.classify = lambda *a: (time.sleep(0.3), c(*a))[1]; "
            "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", code, "sentiment", "predict", "--model",
                             model, "-i", str(src), "-o", str(out / "p.tsv"), "--chunk-size",
                             "10"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(out.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(out.iterdir()), "the temporary output never appeared"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "terminated (SIGTERM)" in err
    assert _leftovers(out) == []


def test_a_killed_runs_temporary_file_goes_at_the_next_run(tmp_path, model, capsys):
    """SIGKILL leaves the temporary file; the next run writing the same output removes it
    when it is stale (its process is gone and it is a minute old), and nothing else."""
    src = _lines_file(tmp_path / "in.txt", _texts(5))
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    old = time.time() - 120
    killed = out / f".p.tsv.{dead.pid}.0123456789ab.tmp"  # a killed run's, by its name
    running = out / f".p.tsv.{os.getpid()}.0123456789ab.tmp"  # a live process's
    fresh = out / f".p.tsv.{dead.pid}.ba9876543210.tmp"  # too young to be called stale
    other = out / f".q.tsv.{dead.pid}.0123456789ab.tmp"  # another output's
    unnamed = out / ".p.tsv.0123456789ab.tmp"  # no process id: maybe another program's
    for f in (killed, running, fresh, other, unnamed):
        f.write_text("half")
        if f is not fresh:
            os.utime(f, (old, old))
    assert _run(capsys, "sentiment", "predict", "--model", model, "-i", src, "-o",
                out / "p.tsv")[0] == 0
    assert _leftovers(out) == sorted([*(f.name for f in (running, fresh, other, unnamed)),
                                      "p.tsv"])


# -- user errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("argv,says", [
    ([], "nothing to classify: give texts as arguments, or --input FILE"),
    (["hi", "-i", "in.txt"], "give texts as arguments or --input, not both"),
    (["-i", "in.txt", "--skip-bad-rows"], "--skip-bad-rows apply to CSV/TSV input, not to "
                                          "in.txt, one text per line"),
    (["hi", "--skip-bad-rows"], "--skip-bad-rows apply to CSV/TSV input, not to texts given"),
    (["-i", "in.csv", "--label-column", "y"], "--label-column: predict reads texts only"),
    (["-i", "in.csv", "--no-header"], "--no-header needs --text-column as a 0-based column"),
    (["-i", "in.txt", "--chunk-size", "0"], "argument --chunk-size: expected an integer >= 1"),
])
def test_user_errors(model, capsys, argv, says):
    code, _, err = _run(capsys, "sentiment", "predict", "--model", model, *argv)
    assert code == 2
    assert says in err


# -- under mpiexec -------------------------------------------------------------------------------


def test_two_processes_write_what_one_writes(tmp_path, model):
    need_mpi()
    texts = _texts(203, seed=5)
    src = _lines_file(tmp_path / "in.txt", texts[:150] + [""] + texts[150:])
    csv_file = _write_csv(tmp_path / "in.csv", [(i, t) for i, t in enumerate(texts)],
                          header=("id", "review"))
    for name, extra in (("a.jsonl", ["-i", src, "--json"]), ("b.tsv", ["-i", src]),
                        ("c.jsonl", ["-i", csv_file, "--json"])):
        argv = ["sentiment", "predict", "--model", model, "--chunk-size", "9", *extra]
        assert main([*map(str, argv), "-o", str(tmp_path / f"one-{name}")]) == 0
        code, out, err = mpirun(tmp_path, sys.executable, "-m", "xprnn", *argv, "-o",
                                f"two-{name}")
        assert code == 0, err[-3000:]
        assert out == ""
        assert "with 2 processes" in err
        one = (tmp_path / f"one-{name}").read_bytes()
        assert (tmp_path / f"two-{name}").read_bytes() == one
        assert len(one.splitlines()) == 203
    assert err.count("xprnn: wrote") == 1  # process 0 alone speaks
    code, out, err = mpirun(tmp_path, sys.executable, "-m", "xprnn", "sentiment", "predict",
                            "--model", model, "--chunk-size", "9", "-i", src)
    assert code == 0, err[-3000:]
    assert out.encode() == (tmp_path / "one-b.tsv").read_bytes()  # and to stdout
    assert err.count("skipped 1 blank text(s)") == 1


def test_an_error_in_one_process_ends_the_job_and_writes_nothing(tmp_path, model):
    need_mpi()
    src = _lines_file(tmp_path / "in.txt", _texts(100))
    code = ("import os, sys; from xprnn.cli import _rounds, main; c = _rounds.classify; "
            "n = []\n"
            "def boom(*a):\n"
            "    n.append(1)\n"
            "    if os.environ.get('PMI_RANK', os.environ.get('OMPI_COMM_WORLD_RANK')) == '1' "
            "and len(n) == 2: raise RuntimeError('boom in the second chunk')\n"
            "    return c(*a)\n"
            "_rounds.classify = boom; sys.exit(main(sys.argv[1:]))")
    out = tmp_path / "out"
    out.mkdir()
    argv = ["sentiment", "predict", "--model", model, "-i", src, "--chunk-size", "10"]
    rc, _, err = mpirun(tmp_path, sys.executable, "-c", code, *argv, "-o", out / "p.tsv")
    assert rc == 1
    assert ("xprnn: error: process 1 of 2 failed: RuntimeError: boom in the second chunk"
            in err)
    assert _leftovers(out) == []
    # a bad row that process 0 reads after several rounds
    bad = tmp_path / "bad.csv"
    bad.write_text("review,sentiment\n" + "".join(f"good film {i},pos\n" for i in range(45))
                   + "a,b,c\n", encoding="utf-8")
    rc, _, err = mpirun(tmp_path, sys.executable, "-m", "xprnn", "sentiment", "predict",
                        "--model", model, "-i", bad, "--chunk-size", "10", "-o", out / "p.tsv")
    assert rc == 2
    assert f"xprnn: error: --input: {bad}: line 47: 3 field(s), expected 2" in err
    assert _leftovers(out) == []
    # an input that process 0 cannot open, before the first round: no abort, one message
    rc, _, err = mpirun(tmp_path, sys.executable, "-m", "xprnn", "sentiment", "predict",
                        "--model", model, "-i", "missing.txt", "-o", out / "p.tsv")
    assert rc == 2
    assert err.count("xprnn: error: --input: missing.txt: no such file") == 1
    assert "Abort" not in err
    assert _leftovers(out) == []
    # a model that one process cannot load: every process stops, one message, no abort
    code = ("import os, sys; from xprnn.cli import main; "
            "rank = os.environ.get('PMI_RANK', os.environ.get('OMPI_COMM_WORLD_RANK')); "
            "sys.argv[sys.argv.index('MODEL')] = sys.argv[-1] if rank == '0' else 'nowhere'; "
            "sys.exit(main(sys.argv[1:-1]))")
    rc, _, err = mpirun(tmp_path, sys.executable, "-c", code, "sentiment", "predict", "--model",
                        "MODEL", "-i", src, "-o", out / "p.tsv", model)
    assert rc == 2
    assert err.count("xprnn: error: process 1 of 2: --model nowhere: no such directory") == 1
    assert "Abort" not in err
    assert _leftovers(out) == []
    # standard input: MPICH's mpiexec cannot forward it at the pace of the work
    rc, _, err = mpirun(tmp_path, sys.executable, "-m", "xprnn", "sentiment", "predict",
                        "--model", model, "-i", "-")
    assert rc == 2
    assert "--input -: under mpiexec, standard input cannot be read" in err
    assert "Abort" not in err
