"""fit and evaluate: reproducibility, divergence handling, early stopping, best-model restore,
checkpoints and the learning-curve plot."""

from __future__ import annotations

import numpy as np
import pytest

import xprnn
from xprnn.backend import to_numpy
from xprnn.models import SequenceClassifier
from xprnn.optim import SGD, Adam
from xprnn.text.batching import batches
from xprnn.training import TrainingDiverged, evaluate, fit


def _data(seed=0, n=64, T=6):
    rng = np.random.default_rng(seed)
    seqs = [list(rng.integers(1, 9, rng.integers(2, T + 1))) for _ in range(n)]
    labels = [int(s[0] > 4) for s in seqs]
    return seqs, labels


def _model(xp, device=None, **kw):
    return SequenceClassifier(9, 4, 6, 2, cell="gru", dropout=0.2, xp=xp, device=device, seed=0,
                              **kw)


def _params(model):
    return {k: to_numpy(v).copy() for k, v in model.state_dict().items()}


def test_same_seed_bit_identical_after_training(xp, device, backend):
    if backend != "numpy":
        pytest.skip("bit-identical training is promised on NumPy")
    seqs, labels = _data()
    runs = []
    for _ in range(2):
        model = _model(xp, device)
        fit(model, batches(seqs, labels, 8, seed=3), Adam(lr=1e-2), 2, clip=1.0,
            progress=False, log=None)
        runs.append(_params(model))
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k], err_msg=k)


def test_non_finite_loss_stops_and_keeps_last_good_parameters(xp, device):
    seqs, labels = _data()
    model = _model(xp, device)
    train = batches(seqs, labels, 8, seed=0)
    fit(model, train, SGD(lr=0.1), 1, progress=False, log=None)
    before = _params(model)

    class Poison:  # the first step turns every weight into nan, so the next loss is nan
        def step(self, params, grads):
            return {k: xp.full_like(v, float("nan")) for k, v in params.items()}

    with pytest.raises(TrainingDiverged, match="non-finite loss") as info:
        fit(model, train, Poison(), 1, progress=False, log=None)
    assert "epoch 1, step 2" in info.value.history.stop_reason
    after = _params(model)
    for k in before:  # the parameters before the poisoned step: all finite again
        assert np.all(np.isfinite(after[k])), k


def test_early_stopping_restores_best_and_checkpoints(xp, device, tmp_path):
    seqs, labels = _data()
    model = _model(xp, device)
    valid = batches(seqs, labels, 16, shuffle=False)
    hist = fit(model, batches(seqs, labels, 8, seed=0), Adam(lr=0.05), 12, valid=valid,
               patience=2, checkpoint=tmp_path / "best", progress=False, log=None)
    accs, losses = hist["valid_accuracy"], hist["valid_loss"]
    # the highest accuracy, ties broken by the lower loss, the earliest among equals
    best = max(range(len(accs)), key=lambda i: (accs[i], -losses[i]))
    assert hist.best_epoch == best + 1
    assert len(accs) == len(hist.epochs) <= 12
    if len(accs) < 12:
        assert hist.stop_reason.startswith("no better validation score")
    # the model holds the best epoch's parameters, and so does the checkpoint
    assert evaluate(model, valid)["accuracy"] == pytest.approx(accs[best])
    loaded = xprnn.load(tmp_path / "best", xp=xp, device=device)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(to_numpy(loaded.state_dict()[k]), to_numpy(v))


def test_history_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    seqs, labels = _data()
    model = _model(None)
    hist = fit(model, batches(seqs, labels, 16, seed=0), Adam(lr=1e-2), 2,
               valid=batches(seqs, labels, 32, shuffle=False), progress=False, log=None)
    path = hist.plot(tmp_path / "curve.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
