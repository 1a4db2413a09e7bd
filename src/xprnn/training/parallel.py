"""Data parallelism over MPI (``mpi4py``): several processes, on one machine or many, train one
model as one process would with the same global batch.

Start the processes with an MPI launcher (``mpiexec -n 4 python train.py``) and let a
:class:`DataParallel` run the training::

    dp = DataParallel()                    # MPI.COMM_WORLD
    history = dp.fit(model, train, optimizer, epochs, valid=valid, checkpoint="runs/x")

What each step does:

1. Every process builds the same global batches (the same seeded order: a
   :class:`~xprnn.text.batching.Batches` with a seed) and keeps its own contiguous block of each
   batch's rows (``training/_shard.py``).
2. Its model computes the mean loss and gradients over those rows; both are weighted by the
   process's share of the batch (its rows / the batch's rows; a language model's rows all have
   the same number of tokens, so rows count tokens too) and packed, with two flags (Ctrl-C, the
   deadline), into **one flat buffer**.
3. One ``Allreduce`` sums the buffer (``training/_transport.py``: through host memory, a
   CUDA-aware MPI, or NCCL), so every process holds the global batch's mean loss and gradients,
   exactly those of one process up to the order of the additions; then each clips and steps its
   optimizer alike. A non-finite loss is the same in every process, so they all stop together.

Only process 0 logs, shows progress and writes checkpoints and the training state. Validation is
sharded too and its sums added. An exception in one process ends the whole job (``Abort``) with
a message naming the process, instead of leaving the others waiting in the next all-reduce.

``mpi4py`` is imported only when used: xprnn imports and trains without it.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import zlib
from contextlib import contextmanager

import numpy as np

from ..backend import device_of, dtype_name, from_numpy, namespace, to_numpy
from . import loop
from ._shard import Shards, SizedShards, join_rows, split_rows
from ._transport import TRANSPORTS, make_transport, pack, unpack
from .history import TrainingDiverged, TrainingInterrupted
from .state import _generators

__all__ = ["world", "DataParallel", "TRANSPORTS"]

# set by MPI launchers (MPICH/Intel's hydra, Open MPI, MVAPICH, PMIx) in the processes they start
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


def world():
    """``MPI.COMM_WORLD`` if an MPI launcher started this process among several, else ``None``.

    A process that no launcher started never imports ``mpi4py`` (so a plain run stays exactly
    as without MPI).

    Raises
    ------
    ImportError
        If a launcher started several processes but ``mpi4py`` cannot be imported: each would
        otherwise train alone and overwrite the others' files.
    """
    if not any(v in os.environ for v in _SIZE_VARS + _RANK_VARS):
        return None
    try:
        from mpi4py import MPI
    except ImportError as e:
        size = next((os.environ[v] for v in _SIZE_VARS if v in os.environ), "1")
        if size.isdigit() and int(size) > 1:
            raise ImportError(f"started by an MPI launcher as one of {size} processes, but "
                              f"mpi4py cannot be imported ({e}); install it with "
                              "pip install 'xprnn[mpi]'") from None
        return None
    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None


class DataParallel:
    """Data-parallel training over an MPI communicator.

    Parameters
    ----------
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``.
    transport : {"host", "cuda-mpi", "nccl"}
        How the flat buffer travels (``training/_transport.py``): through host memory
        (any backend, any MPI), as a CuPy device buffer to a CUDA-aware MPI, or with NCCL
        (``cupyx.distributed``, one GPU per process, the device selected before the first step).

    Notes
    -----
    ``fit(..., team=dp)`` with batches from :meth:`shard` is what :meth:`fit` runs;
    :func:`~xprnn.training.step.train_step` calls :meth:`reduce_step` (``reduce=``), and ``fit``
    the other methods (``setup``, ``time_up``, ``stop_requested``, ``batch_tokens``,
    ``reduce_sums``, ``gather_carry``, ``scatter_carry``), which take its decisions with every
    process.
    """

    def __init__(self, comm=None, *, transport="host"):
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        if comm is None:
            from mpi4py import MPI

            comm = MPI.COMM_WORLD
        self.comm, self.rank, self.size = comm, comm.Get_rank(), comm.Get_size()
        self.transport, self._wires = transport, {}
        self._weight, self._global, self._model = 1.0, None, None
        self._deadline, self._interrupted = None, None
        self._stop = self._late = False  # as agreed in the last all-reduce

    def __repr__(self):
        return f"DataParallel(rank={self.rank}, size={self.size}, transport={self.transport!r})"

    def _wire(self, xp):
        key = getattr(xp, "__name__", str(xp))
        if key not in self._wires:
            self._wires[key] = make_transport(self.transport, self.comm, xp)
        return self._wires[key]

    # -- data and parameters ---------------------------------------------------------------
    def shard(self, batches, *, training=True):
        """This process's rows of each batch of ``batches`` (see ``training/_shard.py``);
        ``training=False`` for evaluation (a process with no rows of a batch skips it)."""
        cls = SizedShards if hasattr(batches, "__len__") else Shards
        return cls(batches, self.rank, self.size, self._on_batch if training else None,
                   keep_empty=training)

    def _on_batch(self, batch, rows, total):
        self._weight, self._global = rows / total, batch

    def broadcast(self, model):
        """Give every process process 0's parameters (one ``Bcast`` of one flat buffer), after
        checking that every process built a model with the same parameter names and shapes."""
        params = model.state_dict()
        sig = [(k, tuple(int(n) for n in v.shape), dtype_name(v.dtype)) for k, v in params.items()]
        sigs = self.comm.allgather(sig)
        bad = [r for r, s in enumerate(sigs) if s != sigs[0]]
        if bad:
            raise ValueError(f"the processes built different models: rank {bad[0]} has "
                             f"parameters {sigs[bad[0]]}, rank 0 {sigs[0]}")
        xp = namespace(*params.values())
        flat = pack(list(params.values()), [], xp)
        flat = self._wire(xp).broadcast(flat, 0)
        model.update(unpack(flat, params, xp))

    # -- the training step -----------------------------------------------------------------
    def reduce_step(self, grads, loss):
        """``(grads, loss)`` summed over the processes, each weighted by its share of the batch
        (one ``Allreduce`` of one flat buffer); ``loss`` comes back as a float, read from the host
        with the flags that say whether any process was interrupted or is past the deadline."""
        if self._global is None and self.size > 1:
            raise RuntimeError("DataParallel: this batch was not split across the processes; "
                               "iterate dp.shard(batches) (DataParallel.fit does)")
        arrays = list(grads.values())
        xp = namespace(*arrays)
        dtype, device, w = arrays[0].dtype, device_of(arrays[0]), self._weight
        stop = self._interrupted is not None and self._interrupted()
        flags = from_numpy(np.array([stop, self._late_here()]), xp, device, dtype_name(dtype))
        if loss is None:
            loss = xp.zeros((), dtype=dtype, device=device)
        loss = xp.reshape(xp.astype(loss, dtype) * w, (1,))  # weighted like the gradients
        flat = pack([g * w for g in arrays], [loss, flags], xp)
        flat = self._wire(xp).allreduce(flat)
        summed, stops, lates = (float(v) for v in to_numpy(flat[-3:]))
        self._stop, self._late = stops > 0, lates > 0
        return unpack(flat, grads, xp), summed

    def __call__(self, grads):
        """As a plain gradient hook: the gradients summed (the loss is not)."""
        return self.reduce_step(grads, None)[0]

    # -- what fit asks ---------------------------------------------------------------------
    def setup(self, model, deadline, interrupted):
        """Called by ``fit`` once its state is loaded: remembers the model, the deadline and the
        local Ctrl-C flag, and gives processes 1.. their own dropout streams (derived from the
        loaded ones), so that no two processes draw the same masks."""
        self._model, self._deadline, self._interrupted = model, deadline, interrupted
        self._global, self._stop, self._late = None, False, False
        if self.rank > 0:
            for g in _generators(model).values():
                key = zlib.crc32(json.dumps(g.get_state(), sort_keys=True).encode())
                seq = np.random.SeedSequence([g.seed, self.rank, key])
                g.set_state({"seed": int(seq.generate_state(1, np.uint64)[0]), "streams": {}})

    def _late_here(self):
        return self._deadline is not None and time.monotonic() >= self._deadline

    def time_up(self, fresh):
        """Whether any process is past the deadline: asked now (``fresh``, at an epoch's start)
        or as agreed in the last step's all-reduce."""
        if not fresh:
            return self._late
        return bool(self.comm.allreduce(int(self._late_here()), op=_max()))

    def stop_requested(self):
        """Whether Ctrl-C reached any process, as agreed in the last step's all-reduce (so all
        stop after the same step)."""
        return self._stop

    def batch_tokens(self, batch):
        """Tokens of the whole global batch that ``batch`` was cut from (every process's)."""
        model = self._model
        return model.batch_tokens(batch if self._global is None else self._global)

    def reduce_sums(self, sums, count):
        """Validation sums and counts added over the processes (in rank order, so every process
        gets the same floats)."""
        total, n = {}, 0
        for s, k in self.comm.allgather((sums, count)):
            for key, v in s.items():
                total[key] = total.get(key, 0) + v
            n += k
        return total, n

    def gather_carry(self, carry):
        """A language model's carried state of every row, on process 0 (to save it); others
        keep their own. The state's arrays hold the rows on axis 1 (``(layers, rows, H)``)."""
        if carry is None:
            return None
        arrays = carry if isinstance(carry, tuple) else (carry,)
        parts = self.comm.gather([to_numpy(a) for a in arrays], root=0)
        if self.rank != 0:
            return carry
        xp, device = namespace(*arrays), device_of(arrays[0])
        full = tuple(from_numpy(a, xp, device) for a in join_rows(parts, self._global, self.size))
        return full if isinstance(carry, tuple) else full[0]

    def scatter_carry(self, carry):
        """This process's rows of a saved carried state (all rows, as :meth:`gather_carry`
        made it or a single process saved it)."""
        return None if carry is None else split_rows(carry, self.rank, self.size)

    # -- whole runs ------------------------------------------------------------------------
    def fit(self, model, train, optimizer, epochs=1, *, valid=None, checkpoint=None, state=None,
            progress=True, log=print, **kw):
        """:func:`xprnn.fit` across the processes: the same arguments, the same result in every
        process (the parameters, the history). Process 0 alone logs, shows progress and writes
        ``checkpoint`` and ``state``; ``resume`` is read by every process (a shared file system,
        or a copy on every machine). The history records ``world_size``."""
        if "team" in kw:
            raise TypeError("DataParallel.fit is the team; it takes no team")
        if getattr(train, "shuffle", False) and getattr(train, "seed", 0) is None:
            raise ValueError("train batches with seed=None shuffle differently in every "
                             "process; give them a seed")
        lead = self.rank == 0
        with self.abort_on_error():
            self.broadcast(model)
            try:
                history = loop.fit(
                    model, self.shard(train), optimizer, epochs,
                    valid=None if valid is None else self.shard(valid, training=False),
                    checkpoint=checkpoint if lead else None, state=state if lead else None,
                    progress=progress and lead, log=log if lead else None, team=self, **kw)
            except (TrainingDiverged, TrainingInterrupted) as e:
                if e.history is not None:
                    e.history.world_size = self.size
                raise
        history.world_size = self.size
        return history

    def evaluate(self, model, batches):
        """:func:`xprnn.training.evaluate` sharded: each process evaluates its rows, the sums
        are added; every process gets the metrics of all of ``batches``."""
        with self.abort_on_error():
            return loop.evaluate(model, self.shard(batches, training=False),
                                 reduce=self.reduce_sums)

    @contextmanager
    def abort_on_error(self):
        """Inside, an exception in this process ends every process of the job (``Abort``) after
        printing it with the rank, instead of leaving the others waiting forever in the next
        collective. ``TrainingDiverged`` and ``TrainingInterrupted``, which every process raises
        at the same step, pass through."""
        try:
            yield
        except (TrainingDiverged, TrainingInterrupted):
            raise
        except BaseException as e:  # a second Ctrl-C, too, must not leave others waiting
            self.abort(e)

    def abort(self, error, code=1):
        """Print ``error`` with this process's rank and end the whole MPI job."""
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
        print(f"xprnn: error in process {self.rank} of {self.size}: {type(error).__name__}: "
              f"{error}; ending all {self.size} processes (MPI Abort)", file=sys.stderr,
              flush=True)
        sys.stdout.flush()
        # the launcher forwards each process's output asynchronously: give it a moment to
        # deliver the message before Abort tears the job down (under load it was lost)
        time.sleep(0.5)
        self.comm.Abort(code)


def _max():
    from mpi4py import MPI

    return MPI.MAX
