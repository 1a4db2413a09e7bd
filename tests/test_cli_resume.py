"""The train commands: Ctrl-C saves the training state and says how to resume; ``--resume``
ends with exactly the model of an uninterrupted run; ``--out`` is checked before any work."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from xprnn.backend import to_numpy
from xprnn.checkpoint import load
from xprnn.cli import main
from xprnn.training import loop

from .test_cli import _reviews, _write_csv

SMALL = ["--embedding-dim", "8", "--hidden", "8", "--no-progress", "--batch-size", "16",
         "--dropout", "0.2"]


@pytest.fixture(autouse=True)
def _numpy_only(backend):
    if backend != "numpy":
        pytest.skip("the command line runs on NumPy here; its backends are tested elsewhere")


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _ctrl_c_at(monkeypatch, step):
    """Press Ctrl-C during training step ``step`` (1-based) of the next run."""
    real, count = loop.train_step, [0]

    def step_then_maybe_interrupt(*a, **kw):
        count[0] += 1
        if count[0] == step:
            signal.raise_signal(signal.SIGINT)
        return real(*a, **kw)

    monkeypatch.setattr(loop, "train_step", step_then_maybe_interrupt)


def _same_weights(a, b):
    ma, mb = load(a), load(b)
    for k, v in ma.state_dict().items():
        np.testing.assert_array_equal(to_numpy(mb.state_dict()[k]), to_numpy(v), err_msg=k)


@pytest.mark.parametrize("valid", ["0.1", "0"])
def test_sentiment_ctrl_c_then_resume(tmp_path, capsys, monkeypatch, valid):
    data = _write_csv(tmp_path / "train.csv", _reviews(120, 0))
    # no baseline: its own fit would count the steps (and Ctrl-C would stop it, not the model)
    args = ["sentiment", "train", "--data", data, "--epochs", "3", "--valid-fraction", valid,
            "--no-baseline", *SMALL]
    assert _run(capsys, *args, "--out", tmp_path / "full")[0] == 0

    _ctrl_c_at(monkeypatch, 9)  # 7 batches per epoch (108 or 120 rows): inside epoch 2
    code, _, err = _run(capsys, *args, "--out", tmp_path / "cut")
    assert code == 130
    state = tmp_path / "cut" / "training_state.safetensors"
    assert state.is_file() and f"training state is saved in {state}" in err
    assert "stopped in epoch 2" in err and f"--resume {tmp_path / 'cut'}" in err
    assert (tmp_path / "cut" / "model.safetensors").is_file()  # epoch 1's model is kept
    monkeypatch.undo()

    code, out, err = _run(capsys, "sentiment", "train", "--resume", tmp_path / "cut",
                          "--no-progress")
    assert code == 0, err
    _same_weights(tmp_path / "full", tmp_path / "cut")


def test_lm_ctrl_c_then_resume(tmp_path, capsys, monkeypatch):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 30, encoding="utf-8")
    args = ["lm", "train", "--text", text, "--level", "char", "--epochs", "2", "--hidden", "8",
            "--batch-size", "4", "--seq-len", "16", "--dropout", "0.1", "--no-progress"]
    assert _run(capsys, *args, "--out", tmp_path / "full")[0] == 0
    _ctrl_c_at(monkeypatch, 25)
    code, _, err = _run(capsys, *args, "--out", tmp_path / "cut")
    assert code == 130 and "--resume" in err
    monkeypatch.undo()
    assert _run(capsys, "lm", "train", "--resume", tmp_path / "cut", "--no-progress")[0] == 0
    _same_weights(tmp_path / "full", tmp_path / "cut")


def test_out_is_checked_before_any_work(tmp_path, capsys):
    data = _write_csv(tmp_path / "train.csv", _reviews(40, 0))
    args = ["sentiment", "train", "--data", data, "--epochs", "1", *SMALL]
    assert _run(capsys, *args, "--out", tmp_path / "m")[0] == 0
    code, _, err = _run(capsys, *args, "--out", tmp_path / "m")
    assert code == 2 and "already holds a model" in err and "--force" in err
    assert _run(capsys, *args, "--out", tmp_path / "m", "--force")[0] == 0
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = _run(capsys, *args, "--out", blocker / "sub")
    assert code == 2 and "cannot write there" in err
    if Path("/proc/self").is_dir():  # writable by access() for root, yet no file can be made
        code, out, err = _run(capsys, *args, "--out", "/proc/xprnn-out")
        assert code == 2 and "cannot write there" in err and "training on" not in out
    code, _, err = _run(capsys, "sentiment", "train", "--resume", tmp_path / "nothing")
    assert code == 2 and "no training state to resume from" in err


def test_python_dash_m_runs_the_command():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "xprnn", "--version"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("xprnn ")
