"""Issue 14, case 1: a diverging run stops, keeps its last good model and says so.

The rule (``xprnn.training.divergence``): a non-finite loss, or 5 consecutive steps with a loss at
least 100 times the first step's, or training ending on such a step. Each test failed on the code
before the rule (which stopped on a non-finite loss only and could pick an epoch whose validation
loss was inf as the best)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xprnn.backend import to_numpy
from xprnn.checkpoint import WEIGHTS_NAME
from xprnn.cli import main
from xprnn.models import SequenceClassifier
from xprnn.optim import SGD, Adam
from xprnn.text.batching import batches
from xprnn.training import TrainingDiverged, fit
from xprnn.training.divergence import Divergence


def _data(seed=0, n=64, T=6):
    rng = np.random.default_rng(seed)
    seqs = [list(rng.integers(1, 9, rng.integers(2, T + 1))) for _ in range(n)]
    return seqs, [int(s[0] > 4) for s in seqs]


def _model(xp, device=None):
    return SequenceClassifier(9, 4, 6, 2, cell="gru", dropout=0.0, xp=xp, device=device, seed=0)


def _params(model):
    return {k: to_numpy(v).copy() for k, v in model.state_dict().items()}


def _inflate(model, steps, factor=1e6):
    """Multiply the loss of the given (1-based) training steps by ``factor``; records the
    parameters each step started from (``seen[i]``: those of step ``i + 1``)."""
    real, seen = model.train_batch, []

    def train_batch(batch, carry=None):
        seen.append(_params(model))
        loss, grads, carry = real(batch, carry)
        return (loss * factor if len(seen) in steps else loss), grads, carry

    model.train_batch = train_batch
    return seen


# -- the rule ------------------------------------------------------------------------------------


def test_the_rule_needs_a_sustained_stretch():
    watch = Divergence()
    for loss in [0.7, 0.6, 500.0, 800.0, 0.5, 0.4]:  # a bump of two steps: no stop
        watch.observe(loss)
    assert watch.limit == pytest.approx(100.0) and not watch.above
    for loss in [1e3] * 4:
        watch.observe(loss)
    with pytest.raises(TrainingDiverged, match=r"loss exploded \(1e\+03, at or above 100 = 100 "
                                               r"times the first step's 0\.7, for 5 steps\)"):
        watch.observe(1e3)


def test_the_limit_has_a_floor_for_a_small_first_loss():
    watch = Divergence()
    watch.observe(1e-4)  # a loaded model on an easy first batch
    for _ in range(10):
        watch.observe(50.0)  # far above 100 x 1e-4, but not above 100 x 1.0
    assert watch.limit == 100.0 and not watch.above


def test_the_end_of_training_on_an_exploded_step_is_divergence():
    watch = Divergence()
    watch.observe(1.0)
    watch.observe(1e9)
    assert not watch.end_epoch()
    with pytest.raises(TrainingDiverged, match="when training ended"):
        watch.check_end()


def test_an_exploded_validation_loss_makes_the_epoch_unusable():
    watch = Divergence()
    watch.observe(1.0)  # the last update exploded: only the validation loss can tell
    assert watch.end_epoch(valid_loss=50.0) and not watch.end_epoch(valid_loss=4e29)
    assert not watch.end_epoch(valid_loss=float("nan"))
    with pytest.raises(TrainingDiverged, match=r"\(nan, .* when training ended"):
        watch.check_end()


# -- fit -----------------------------------------------------------------------------------------


def test_fit_stops_an_exploding_loss_and_keeps_the_last_good_parameters(xp, device):
    seqs, labels = _data()
    model = _model(xp, device)
    seen = _inflate(model, steps=range(3, 100))
    with pytest.raises(TrainingDiverged, match="loss exploded") as info:
        fit(model, batches(seqs, labels, 8, seed=0), Adam(lr=1e-2), 3, progress=False, log=None)
    assert info.value.history.stop_reason.endswith("at epoch 1, step 7")  # steps 3..7 exploded
    after = _params(model)
    for k, v in seen[1].items():  # step 2's parameters: the last whose loss was below the limit
        np.testing.assert_array_equal(after[k], v, err_msg=k)


def test_fit_goes_on_through_a_bump(xp, device):
    seqs, labels = _data()
    model = _model(xp, device)
    _inflate(model, steps={3, 4, 5, 6})  # four steps far above the limit, then normal again
    hist = fit(model, batches(seqs, labels, 8, seed=0), Adam(lr=1e-2), 2, progress=False,
               log=None)
    assert len(hist.epochs) == 2 and hist.stop_reason is None


def test_an_epoch_ending_exploded_is_not_the_best_nor_saved(xp, device, tmp_path):
    seqs, labels = _data()
    model = _model(xp, device)
    # 8 steps an epoch: the last two of epoch 1 explode (a bump, cut by the epoch's end)
    _inflate(model, steps={7, 8})
    valid = batches(seqs, labels, 16, shuffle=False)
    hist = fit(model, batches(seqs, labels, 8, seed=0), Adam(lr=1e-2), 2, valid=valid,
               checkpoint=tmp_path / "best", progress=False, log=None)
    assert hist.best_epoch == 2
    # without validation, the exploded epoch is not written; the next one is
    model = _model(xp, device)
    _inflate(model, steps={7, 8})
    with pytest.raises(TrainingDiverged, match="when training ended"):
        fit(model, batches(seqs, labels, 8, seed=0), Adam(lr=1e-2), 1,
            checkpoint=tmp_path / "last", progress=False, log=None)
    assert not (tmp_path / "last" / WEIGHTS_NAME).exists()


def test_an_infinite_validation_loss_is_never_the_best(xp, device, tmp_path):
    seqs, labels = _data()
    model = _model(xp, device)
    real, calls = model.eval_batch, [0]

    def eval_batch(batch, carry=None):  # epoch 1's validation: a loss of inf, accuracy as is
        calls[0] += 1
        sums, count, carry = real(batch, carry)
        return ({**sums, "loss": float("inf")} if calls[0] <= 4 else sums), count, carry

    model.eval_batch = eval_batch
    hist = fit(model, batches(seqs, labels, 8, seed=0), SGD(lr=1e-3), 2,
               valid=batches(seqs, labels, 16, shuffle=False), checkpoint=tmp_path / "best",
               progress=False, log=None)
    assert hist["valid_loss"][0] == float("inf") and hist.best_epoch == 2


# -- the command line ----------------------------------------------------------------------------


def _csv(tmp_path, n=120):
    rng = np.random.default_rng(0)
    words = ["good", "bad", "film", "plot", "the", "was", "great", "awful"]
    path = tmp_path / "good.csv"
    path.write_text("review,sentiment\n" + "".join(
        f"{' '.join(rng.choice(words, 6))},{'pos' if i % 2 else 'neg'}\n" for i in range(n)),
        encoding="utf-8")
    return path


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "RuntimeWarning" not in err
    return code, out, err


TINY = ["--embedding-dim", "8", "--hidden", "8", "--no-progress"]


@pytest.mark.parametrize("extra", [["--lr", "1e30"], ["--lr", "1e37", "--batch-size", "60"]])
def test_cli_exits_non_zero_with_a_hint_and_saves_no_exploded_model(tmp_path, capsys, backend,
                                                                     extra):
    if backend != "numpy":
        pytest.skip("backend-independent; runs under --backend numpy")
    out = tmp_path / "x"
    code, stdout, err = _run(capsys, "sentiment", "train", "--data", _csv(tmp_path), *TINY,
                             "--optimizer", "sgd", "--clip", "0", "--epochs", "3", *extra,
                             "--out", out)
    assert code == 1 and "model saved" not in stdout
    (line,) = err.strip().splitlines()
    assert line.startswith("xprnn: error: training diverged: ")
    assert "no model was saved" in line and "try a smaller --lr than" in line
    assert "--clip 1" in line
    assert not (out / WEIGHTS_NAME).exists()
    history = json.loads((out / "history.json").read_text())
    assert history["best_epoch"] is None


def _explode_after_4_steps(monkeypatch):
    """The classifier's loss reads 1e6 times too high from step 5 on (with 4 steps an epoch,
    epoch 2 explodes); returns the step counter, which a test may wind on."""
    real, calls = SequenceClassifier.train_batch, [0]

    def train_batch(self, batch, carry=None):
        calls[0] += 1
        loss, grads, carry = real(self, batch, carry)
        return (loss * 1e6 if calls[0] > 4 else loss), grads, carry

    monkeypatch.setattr(SequenceClassifier, "train_batch", train_batch)
    return calls


def test_cli_keeps_the_best_epoch_saved_before_the_explosion(tmp_path, capsys, backend,
                                                             monkeypatch):
    if backend != "numpy":
        pytest.skip("backend-independent; runs under --backend numpy")
    _explode_after_4_steps(monkeypatch)
    out = tmp_path / "x"
    code, _, err = _run(capsys, "sentiment", "train", "--data", _csv(tmp_path), *TINY,
                        "--batch-size", "27", "--epochs", "3", "--out", out)
    assert code == 1
    assert "the model of epoch 1, the best before that, is kept in" in err
    assert "a smaller --clip than 5" in err
    assert (out / WEIGHTS_NAME).exists()
    code, stdout, _ = _run(capsys, "sentiment", "predict", "--model", out, "good film")
    assert code == 0 and stdout.strip()


def test_cli_says_which_model_is_kept_without_validation_and_with_force(tmp_path, capsys, backend,
                                                                       monkeypatch):
    if backend != "numpy":
        pytest.skip("backend-independent; runs under --backend numpy")
    calls = _explode_after_4_steps(monkeypatch)
    out, data = tmp_path / "x", _csv(tmp_path)
    code, _, err = _run(capsys, "sentiment", "train", "--data", data, *TINY, "--batch-size",
                        "30", "--valid-fraction", "0", "--epochs", "3", "--out", out)
    assert code == 1  # without validation the last epoch that ended usable was saved
    assert f"the model of the last epoch that ended before that is kept in {out}" in err
    assert (out / WEIGHTS_NAME).exists()
    calls[0] = 3  # the next run explodes from its second step: its epoch 1 is never saved
    before = (out / WEIGHTS_NAME).read_bytes()
    code, _, err = _run(capsys, "sentiment", "train", "--data", data, *TINY, "--batch-size",
                        "30", "--valid-fraction", "0", "--epochs", "3", "--out", out, "--force")
    assert code == 1
    assert f"no model of this run was saved (no epoch ended with a usable model); {out} still " \
           "holds the earlier run's model" in err
    assert (out / WEIGHTS_NAME).read_bytes() == before


def test_lm_cli_exits_non_zero_on_a_huge_learning_rate(tmp_path, capsys, backend):
    if backend != "numpy":
        pytest.skip("backend-independent; runs under --backend numpy")
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat. the dog sat on the log. " * 30, encoding="utf-8")
    code, _, err = _run(capsys, "lm", "train", "--text", text, "--level", "char", "--hidden",
                        "16", "--seq-len", "10", "--batch-size", "4", "--epochs", "2",
                        "--no-progress", "--optimizer", "sgd", "--lr", "1e30", "--clip", "0",
                        "--out", tmp_path / "lm")
    assert code == 1 and "xprnn: error: training diverged: " in err
    assert not (tmp_path / "lm" / WEIGHTS_NAME).exists()


def test_cli_turns_numpy_overflow_warnings_into_one_note(tmp_path, capsys, backend, monkeypatch):
    if backend != "numpy":
        pytest.skip("backend-independent; runs under --backend numpy")
    real = SequenceClassifier.train_batch

    def train_batch(self, batch, carry=None):  # an overflow that does no harm
        np.float32(3e38) * np.float32(10)
        return real(self, batch, carry)

    monkeypatch.setattr(SequenceClassifier, "train_batch", train_batch)
    code, _, err = _run(capsys, "sentiment", "train", "--data", _csv(tmp_path), *TINY,
                        "--epochs", "1", "--out", tmp_path / "x")
    assert code == 0
    assert "xprnn: note: NumPy met floating-point overflow (4 times) in this run" in err


def test_the_console_shows_no_runtime_warning(tmp_path, backend):
    """What a user sees: ``python -m xprnn`` in a fresh process with Python's default warning
    filters (which print NumPy's overflow warnings) and with warnings as errors."""
    if backend != "numpy":
        pytest.skip("backend-independent; runs under --backend numpy")
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
           "OPENBLAS_NUM_THREADS": "1"}
    argv = ["-m", "xprnn", "sentiment", "train", "--data", str(_csv(tmp_path)), *TINY,
            "--optimizer", "sgd", "--clip", "0", "--lr", "1e30", "--epochs", "3"]
    for flags in ([], ["-W", "error"]):
        r = subprocess.run([sys.executable, *flags, *argv, "--out", str(tmp_path / str(flags))],
                           capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 1, r.stderr
        assert "Warning" not in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith("xprnn: error: training diverged: loss exploded")
