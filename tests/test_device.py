"""The public workflow on a device that is not the host, end to end.

array-api-strict's ``Device("device1")`` stands in for an accelerator: its arrays refuse
``np.asarray`` and refuse to meet arrays of another device, as CuPy or CUDA tensors do. Building,
training (``model.loss``, ``train_step``, ``fit``), saving, loading, predicting and generating
must keep every array there; data cross to the host only at the edges, through
:func:`xprnn.backend.to_numpy` / :func:`~xprnn.backend.from_numpy`, never once per time step.

These tests build their models on array-api-strict whatever ``--backend`` says, so they run
wherever array-api-strict is installed.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import xprnn
from xprnn.backend import device_of, to_numpy
from xprnn.optim import SGD, Adam

V, E, H, C = 20, 4, 6, 2


@pytest.fixture(scope="module")
def strict():
    return pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")


@pytest.fixture(scope="module")
def dev(strict):
    return strict.Device("device1")


def _assert_on(dev, arrays, what):
    """Every array in ``arrays`` (a dict or a sequence) lives on ``dev``."""
    items = arrays.items() if isinstance(arrays, dict) else enumerate(arrays)
    wrong = {k: device_of(a) for k, a in items if device_of(a) != dev}
    assert wrong == {}, f"{what} left the device"


def _batches(n=2, B=3, T=5, seed=0):
    """``n`` classifier batches ``(ids, lengths, labels)`` of NumPy arrays, as fit takes them."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lengths = rng.integers(2, T + 1, B)
        lengths[0] = T
        ids = rng.integers(1, V, (B, T))
        ids[np.arange(T)[None, :] >= lengths[:, None]] = 0  # padding
        out.append((ids, lengths, rng.integers(0, C, B)))
    return out


def _classifier(strict, dev, **kw):
    return xprnn.SequenceClassifier(V, E, H, C, cell="lstm", bidirectional=True, dropout=0.2,
                                    pooling="mean", xp=strict, device=dev, dtype="float64",
                                    seed=0, **kw)


def test_the_simulated_device_refuses_implicit_host_copies(strict, dev):
    """The premise of this file: without to_numpy nothing leaves device1."""
    x = strict.asarray(np.ones(3), device=dev)
    with pytest.raises(RuntimeError, match="NumPy"):
        np.asarray(x)
    with pytest.raises(ValueError, match="different devices"):
        x + strict.asarray(np.ones(3))
    np.testing.assert_array_equal(to_numpy(x), np.ones(3))


def test_classifier_workflow_stays_on_the_device(strict, dev, tmp_path):
    model = _classifier(strict, dev)
    _assert_on(dev, model.state_dict(), "a parameter after construction")
    (ids, lengths, labels), second = _batches()

    # forward and backward through model.loss; ids may also come as device arrays
    loss, grads, logits = model.loss(strict.asarray(ids, device=dev), lengths, labels)
    _assert_on(dev, [loss, logits], "the loss or the logits")
    _assert_on(dev, grads, "a gradient")
    assert set(grads) == set(model.state_dict()) and np.isfinite(float(loss))

    # one training step: new parameters, still on the device, and so is the optimizer state
    before = {k: to_numpy(v) for k, v in model.state_dict().items()}
    opt = Adam(lr=0.05)
    step = xprnn.train_step(model, (ids, lengths, labels), opt, clip=1.0)
    assert np.isfinite(step.loss) and step.grad_norm > 0
    _assert_on(dev, model.state_dict(), "a parameter after train_step")
    _assert_on(dev, [a for st in opt.state.values() for a in (st["exp_avg"], st["exp_avg_sq"])],
               "the optimizer state")
    after = {k: to_numpy(v) for k, v in model.state_dict().items()}
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert set(changed) == set(before), "every parameter with a gradient moves"

    # fit: one epoch on two tiny batches, with validation
    history = xprnn.fit(model, [(ids, lengths, labels), second], opt, 1, valid=[second],
                        clip=1.0, progress=False, log=None)
    assert len(history.epochs) == 1 and 0.0 <= history["valid_accuracy"][0] <= 1.0
    assert np.isfinite(history["train_loss"][0])
    _assert_on(dev, model.state_dict(), "a parameter after fit")

    # predictions in evaluation mode
    proba = model.predict_proba(ids, lengths)
    _assert_on(dev, [proba], "predict_proba")
    p = to_numpy(proba)
    assert p.shape == (3, C)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)

    # save, then load straight onto the device: the same predictions, bit for bit
    xprnn.save(model, tmp_path / "clf")
    loaded = xprnn.load(tmp_path / "clf", xp=strict, device=dev)
    _assert_on(dev, loaded.state_dict(), "a loaded parameter")
    np.testing.assert_array_equal(to_numpy(loaded.predict_proba(ids, lengths)), p)
    # and on NumPy the same model agrees to rounding
    on_host = xprnn.load(tmp_path / "clf")
    np.testing.assert_allclose(to_numpy(on_host.predict_proba(ids, lengths)), p, rtol=1e-12)


def test_language_model_trains_and_generates_on_the_device(strict, dev, tmp_path):
    lm = xprnn.LanguageModel(12, 8, 8, cell="gru", num_layers=2, dropout=0.1, tie_weights=True,
                             xp=strict, device=dev, dtype="float64", seed=1)
    rng = np.random.default_rng(1)
    inputs, targets = rng.integers(0, 12, (2, 6)), rng.integers(0, 12, (2, 6))
    loss, grads, state = lm.loss(inputs, targets)
    _assert_on(dev, [loss, state], "the loss or the carried state")
    _assert_on(dev, grads, "a gradient")

    before = {k: to_numpy(v) for k, v in lm.state_dict().items()}
    step = xprnn.train_step(lm, (inputs, targets), SGD(lr=0.5), carry=state)
    _assert_on(dev, [step.carry], "the carried state after train_step")
    _assert_on(dev, lm.state_dict(), "a parameter after train_step")
    assert all(not np.array_equal(before[k], to_numpy(v)) for k, v in lm.state_dict().items())

    sampled = lm.generate([1, 2, 3], 6, temperature=0.8, top_k=5, seed=0)
    assert len(sampled) == 6 and all(0 <= i < 12 for i in sampled)
    assert sampled == lm.generate([1, 2, 3], 6, temperature=0.8, top_k=5, seed=0)
    greedy = lm.generate([1, 2, 3], 6, greedy=True)
    _assert_on(dev, lm.state_dict(), "a parameter after generate")
    # the same weights on NumPy pick the same tokens
    assert xprnn.load(xprnn.save(lm, tmp_path / "lm")).generate([1, 2, 3], 6, greedy=True) \
        == greedy


def test_mixing_devices_is_a_clear_error(strict, dev):
    layer = xprnn.GRU(3, 4, xp=strict, device=dev, seed=0)
    on_host_device = strict.asarray(np.ones((5, 2, 3), dtype=np.float32))  # CPU_DEVICE
    with pytest.raises(ValueError, match="move them to one device"):
        layer(on_host_device)
    with pytest.raises(ValueError, match="move them to one device"):
        layer.update({"weight_hh_l0": strict.zeros((12, 4), dtype=strict.float32)})
    # Module.to follows an array's backend and device
    out, h_n = layer.to(on_host_device)(on_host_device)
    assert device_of(out) == device_of(h_n) == device_of(on_host_device) != dev
    layer.to(strict, device=dev)
    _assert_on(dev, layer.state_dict(), "a parameter after .to(device)")


def _count_transfers(monkeypatch, strict):
    """Count every way an array-api-strict array can reach the host (DLPack, ``float``,
    ``int``, ``bool``, ``__index__``, ``__array__``, ``to_device``) and every NumPy array
    handed to ``asarray`` (the way in)."""
    counts = Counter()
    array_type = type(strict.asarray(0.0))
    for name in ("__dlpack__", "__float__", "__int__", "__bool__", "__index__", "__array__",
                 "to_device"):
        original = getattr(array_type, name)

        def counted(self, *args, _original=original, _name=name, **kw):
            counts[_name] += 1
            return _original(self, *args, **kw)

        monkeypatch.setattr(array_type, name, counted)
    asarray = strict.asarray

    def counted_asarray(obj, *args, **kw):
        if isinstance(obj, np.ndarray):
            counts["from_host"] += 1
        return asarray(obj, *args, **kw)

    monkeypatch.setattr(strict, "asarray", counted_asarray)
    return counts


@pytest.mark.parametrize("what", ["layer", "classifier", "language_model"])
def test_host_transfers_do_not_grow_with_sequence_length(strict, dev, monkeypatch, what):
    """Forward and backward cross between host and device a fixed number of times per call,
    however many time steps the loop runs: none of them is inside the time loop."""
    B = 3
    if what == "layer":
        model = xprnn.LSTM(4, 5, num_layers=2, bidirectional=True, dropout=0.3, xp=strict,
                           device=dev, seed=0)
    elif what == "classifier":
        model = _classifier(strict, dev)
    else:
        model = xprnn.LanguageModel(V, E, H, cell="gru", num_layers=2, dropout=0.2, xp=strict,
                                    device=dev, seed=0)
    counts = {}
    for T in (4, 16):
        rng = np.random.default_rng(T)
        lengths = np.array([T, T - 1, 2])
        if what == "layer":
            x = strict.asarray(rng.standard_normal((T, B, 4)).astype(np.float32), device=dev)
            d_out = strict.ones((T, B, 10), dtype=strict.float32, device=dev)
        ids, other = rng.integers(1, V, (B, T)), rng.integers(0, C, B)
        with monkeypatch.context() as m:
            seen = _count_transfers(m, strict)
            if what == "layer":
                _, _, cache = model.forward(x, lengths=lengths)
                model.backward(cache, d_out)
            elif what == "classifier":
                model.loss(ids, lengths, other)
            else:
                model.loss(ids, rng.integers(0, V, (B, T)))
        counts[T] = dict(seen)
    assert counts[4] == counts[16]
