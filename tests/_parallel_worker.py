"""The runs ``tests/test_parallel.py`` starts under ``mpiexec`` (``python _parallel_worker.py TASK
OUT``), and the same runs in one process, for comparison.

Tasks (each writes what it found to ``OUT``, process 0 for the parameters):

- ``equal``: a classifier and a language model trained by :class:`DataParallel` (float64, no
  dropout), their parameters in ``OUT/classifier.npz`` and ``OUT/lm.npz``; then a language model
  interrupted by Ctrl-C in process 1 mid-epoch and resumed (``OUT/lm_resumed.npz``); then a
  classifier with dropout (``OUT/dropout.json``: do the processes hold the same parameters, and
  do they draw different masks);
- ``raise``: process 1 raises in its third step (the job must end, not hang);
- ``diverge``: process 1's loss turns NaN in the second step (every process must stop there);
- ``explode``: process 1's loss is a billion times larger from the second step on (every
  process must stop at the same step, the fifth exploded one);
- ``cupy-host``, ``cupy-cuda-mpi``, ``cupy-nccl``: the classifier on CuPy, its gradients sent
  by that transport (``OUT/cupy_TRANSPORT.npz``).
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
from pathlib import Path

import numpy as np

import xprnn
from xprnn.backend import to_numpy
from xprnn.optim import Adam
from xprnn.text.batching import batches, lm_batches
from xprnn.training import TrainingDiverged, TrainingInterrupted

KW = {"progress": False, "log": None}


def classifier(xp=None, device=None, dropout=0.0, dtype="float64"):
    """Model, optimizer, train and valid batches: 61 rows in batches of 8 (the last has 5), so
    two processes split 4/4 and 2/3 (a last batch of fewer rows than processes is tested by the
    batch size 4 ... 61 = 15 * 4 + 1 run in ``equal``)."""
    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(1, 20, rng.integers(2, 9))) for _ in range(61)]
    labels = [int(s[0] > 9) for s in seqs]
    model = xprnn.SequenceClassifier(20, 5, 6, 2, cell="lstm", pooling="mean", dropout=dropout,
                                     dtype=dtype, seed=1, xp=xp, device=device)
    return (model, Adam(lr=1e-2), batches(seqs, labels, 8, seed=3),
            batches(seqs[:20], labels[:20], 7, shuffle=False))


class Stream:
    """Re-iterable :func:`lm_batches` (one pass per epoch)."""

    def __init__(self, ids, rows, seq_len):
        self.ids, self.rows, self.seq_len = ids, rows, seq_len

    def __iter__(self):
        return lm_batches(self.ids, self.rows, self.seq_len)

    def __len__(self):
        return -(-(self.ids.shape[0] // self.rows - 1) // self.seq_len)


def language_model(xp=None, device=None):
    """Model, optimizer, train and valid streams: 5 rows (two processes split 2/3)."""
    ids = np.random.default_rng(1).integers(0, 12, 600)
    model = xprnn.LanguageModel(12, 6, 7, cell="lstm", num_layers=2, dtype="float64", seed=2,
                                xp=xp, device=device)
    return model, Adam(lr=1e-2), Stream(ids[:500], 5, 10), Stream(ids[500:], 3, 10)


def train(make, fit, epochs=2, **kw):
    model, opt, tr, va = make()
    history = fit(model, tr, opt, epochs, valid=va, clip=0.5, **KW, **kw)
    return model, history


def params(model):
    return {k: to_numpy(v) for k, v in model.state_dict().items()}


def _digest(model):
    h = hashlib.sha256()
    for v in params(model).values():
        h.update(np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


def _ctrl_c_in(model, rank, step):
    """Press Ctrl-C in process ``rank`` during its training step ``step``."""
    real, count = model.train_batch, [0]

    def train_batch(batch, carry=None):
        count[0] += 1
        if count[0] == step and dp.rank == rank:
            signal.raise_signal(signal.SIGINT)
        return real(batch, carry)

    model.train_batch = train_batch


def equal(out):
    same = {}
    for name, make in (("classifier", classifier), ("lm", language_model)):
        model, history = train(make, dp.fit)
        same[name] = len(set(dp.comm.allgather(_digest(model)))) == 1
        if dp.rank == 0:
            np.savez(out / f"{name}.npz", **params(model))
            same[f"{name}_world_size"] = history.world_size

    def small_batches():
        model, opt, tr, va = classifier()
        tr.batch_size = 4  # the last batch has one row: process 0 takes part with no row
        return model, opt, tr, va

    model, _ = train(small_batches, dp.fit)
    if dp.rank == 0:
        np.savez(out / "classifier_b4.npz", **params(model))

    # Ctrl-C in process 1 during step 17 (the 7th of 10 chunks of epoch 2): every process stops
    # after that step, process 0 saves the state with the carried state of all rows, and a
    # resumed run ends as an uninterrupted one
    model, opt, tr, va = language_model()
    _ctrl_c_in(model, 1, 17)
    state = out / "lm_state.safetensors"
    try:
        dp.fit(model, tr, opt, 2, valid=va, clip=0.5, state=state, **KW)
    except TrainingInterrupted as e:
        same["interrupted_at"] = [e.epoch, e.batch]
    model, _ = train(language_model, dp.fit, resume=state)
    if dp.rank == 0:
        np.savez(out / "lm_resumed.npz", **params(model))

    model, _ = train(lambda: classifier(dropout=0.3), dp.fit)
    masks = dp.comm.allgather(json.dumps(model.rng.get_state(), sort_keys=True))
    same["dropout_same_parameters"] = len(set(dp.comm.allgather(_digest(model)))) == 1
    same["dropout_own_streams"] = len(set(masks)) == dp.size
    if dp.rank == 0:
        (out / "found.json").write_text(json.dumps(same))


def fail(out):
    model, opt, tr, va = classifier()
    real, count = model.train_batch, [0]

    def train_batch(batch, carry=None):
        count[0] += 1
        if dp.rank == 1 and count[0] == 3:
            raise RuntimeError("boom in the third step")
        return real(batch, carry)

    model.train_batch = train_batch
    dp.fit(model, tr, opt, 2, **KW)


def diverge(out):
    model, opt, tr, va = classifier()
    real, count = model.train_batch, [0]

    def train_batch(batch, carry=None):
        count[0] += 1
        loss, grads, carry = real(batch, carry)
        return (loss * float("nan") if dp.rank == 1 and count[0] == 2 else loss), grads, carry

    model.train_batch = train_batch
    try:
        dp.fit(model, tr, opt, 2, **KW)
    except TrainingDiverged as e:
        (out / f"diverged.{dp.rank}").write_text(e.history.stop_reason)


def explode(out):
    model, opt, tr, va = classifier()
    real, count = model.train_batch, [0]

    def train_batch(batch, carry=None):
        count[0] += 1
        loss, grads, carry = real(batch, carry)
        return (loss * 1e9 if dp.rank == 1 and count[0] >= 2 else loss), grads, carry

    model.train_batch = train_batch
    try:
        dp.fit(model, tr, opt, 2, **KW)
    except TrainingDiverged as e:
        (out / f"exploded.{dp.rank}").write_text(e.history.stop_reason)


def on_gpu(out, transport):
    """The classifier on CuPy (float64), one GPU per process (by rank, modulo the GPUs), its
    buffer sent by ``transport``; process 0 saves the parameters."""
    import array_api_compat.cupy as xp

    model, _ = train(lambda: classifier(xp=xp), dp.fit)
    if dp.rank == 0:
        np.savez(out / f"cupy_{transport}.npz", **params(model))


if __name__ == "__main__":
    from xprnn.training.parallel import DataParallel

    task, out = sys.argv[1], Path(sys.argv[2])
    if task.startswith("cupy-"):  # e.g. cupy-nccl: pick this process's GPU first
        import cupy
        from mpi4py import MPI

        rank = MPI.COMM_WORLD.Get_rank()
        cupy.cuda.Device(rank % cupy.cuda.runtime.getDeviceCount()).use()
        dp = DataParallel(transport=task[len("cupy-"):])
        on_gpu(out, dp.transport)
    else:
        dp = DataParallel()
        {"equal": equal, "raise": fail, "diverge": diverge, "explode": explode}[task](out)
