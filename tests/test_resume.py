"""Resumable training: a run stopped by Ctrl-C (or killed after an epoch) and resumed ends with
exactly the weights and history of a run never stopped, on the backend under test."""

from __future__ import annotations

import signal

import numpy as np
import pytest

import xprnn
from xprnn.backend import to_numpy
from xprnn.optim import SGD, Adam, cosine_decay
from xprnn.text.batching import batches, lm_batches
from xprnn.training import TrainingInterrupted, load_state

TIMING = ("seconds", "tokens_per_s")


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(1, 30, int(rng.integers(3, 12))) for _ in range(n)]
    return seqs, np.array([int(s[0] >= 15) for s in seqs])


def _classifier_run(xp, device):
    seqs, labels = _data()
    model = xprnn.SequenceClassifier(30, 6, 8, 2, cell="lstm", num_layers=2, dropout=0.3,
                                     pooling="mean", xp=xp, device=device, seed=3)
    opt = Adam(lr=cosine_decay(0.05, total_steps=40, warmup=3))
    train = batches(seqs[:80], labels[:80], 16, seed=5)
    valid = batches(seqs[80:], labels[80:], 16, shuffle=False)
    return model, opt, train, valid


class _Chunks:
    """A re-iterable LM stream: the same chunks in the same order every pass."""

    def __init__(self, ids):
        self.ids = ids

    def __iter__(self):
        return lm_batches(self.ids, 4, 6)

    def __len__(self):
        return -(-(self.ids.shape[0] // 4 - 1) // 6)


def _lm_run(xp, device):
    ids = np.random.default_rng(1).integers(0, 12, 400)
    model = xprnn.LanguageModel(12, 8, 8, cell="gru", dropout=0.2, xp=xp, device=device, seed=4)
    return model, SGD(lr=0.5, momentum=0.9), _Chunks(ids[:320]), _Chunks(ids[320:])


def _interrupt_at(step):
    """A gradient hook that presses Ctrl-C during training step ``step`` (1-based)."""
    count = [0]

    def hook(grads):
        count[0] += 1
        if count[0] == step:
            signal.raise_signal(signal.SIGINT)
        return grads

    return hook


def _same(model_a, hist_a, model_b, hist_b):
    for k, v in model_a.state_dict().items():
        np.testing.assert_array_equal(to_numpy(model_b.state_dict()[k]), to_numpy(v), err_msg=k)
    strip = [{k: v for k, v in e.items() if k not in TIMING} for e in hist_a.epochs]
    assert strip == [{k: v for k, v in e.items() if k not in TIMING} for e in hist_b.epochs]
    assert (hist_a.best_epoch, hist_a.stop_reason) == (hist_b.best_epoch, hist_b.stop_reason)


@pytest.mark.parametrize("make,epochs,stop", [(_classifier_run, 3, 7), (_lm_run, 3, 17)],
                         ids=["classifier", "language-model"])
def test_ctrl_c_then_resume_equals_an_uninterrupted_run(xp, device, tmp_path, make, epochs,
                                                        stop):
    kw = {"progress": False, "log": None}
    model, opt, train, valid = make(xp, device)
    full = xprnn.fit(model, train, opt, epochs, valid=valid, **kw)

    model_b, opt_b, train_b, valid_b = make(xp, device)
    state = tmp_path / "state.safetensors"
    with pytest.raises(TrainingInterrupted) as info:
        xprnn.fit(model_b, train_b, opt_b, epochs, valid=valid_b, state=state,
                  grad_hook=_interrupt_at(stop), **kw)
    per_epoch = len(train)
    assert (info.value.epoch, info.value.batch) == (1 + (stop - 1) // per_epoch,
                                                    1 + (stop - 1) % per_epoch)
    assert info.value.saved == state and state.is_file()
    assert str(state) in str(info.value)
    # a fresh process: new objects built the same way, then the saved state
    model_c, opt_c, train_c, valid_c = make(xp, device)
    resumed = xprnn.fit(model_c, train_c, opt_c, epochs, valid=valid_c, resume=state, **kw)
    _same(model, full, model_c, resumed)
    assert opt_c.step_count == opt.step_count


def test_killed_after_an_epoch_resumes_from_its_state(xp, device, tmp_path):
    kw = {"progress": False, "log": None}
    model, opt, train, valid = _classifier_run(xp, device)
    full = xprnn.fit(model, train, opt, 3, valid=valid, patience=5, **kw)
    model_b, opt_b, train_b, valid_b = _classifier_run(xp, device)
    xprnn.fit(model_b, train_b, opt_b, 2, valid=valid_b, state=tmp_path / "s", patience=5, **kw)
    # the process dies here; a new one resumes from the end of epoch 2
    model_c, opt_c, train_c, valid_c = _classifier_run(xp, device)
    resumed = xprnn.fit(model_c, train_c, opt_c, 3, valid=valid_c, resume=tmp_path / "s",
                        patience=5, **kw)
    _same(model, full, model_c, resumed)


def test_resume_checks_the_model_and_optimizer_first(xp, device, tmp_path):
    model, opt, train, valid = _classifier_run(xp, device)
    xprnn.fit(model, train, opt, 1, state=tmp_path / "s", progress=False, log=None)
    other = xprnn.SequenceClassifier(30, 6, 9, 2, cell="lstm", num_layers=2, xp=xp,
                                     device=device, seed=3)
    before = {k: to_numpy(v) for k, v in other.state_dict().items()}
    with pytest.raises(ValueError, match="cannot resume .*hidden_size': 8.*hidden_size': 9"):
        load_state(tmp_path / "s", other, Adam())
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(to_numpy(v), before[k])
    same, _, _, _ = _classifier_run(xp, device)
    with pytest.raises(ValueError, match="trained with Adam, not SGD"):
        load_state(tmp_path / "s", same, SGD(lr=0.1))
    with pytest.raises(ValueError, match="no training state"):
        load_state(tmp_path / "missing", same, Adam())
    (tmp_path / "bad").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="not a readable training state"):
        load_state(tmp_path / "bad", same, Adam())
