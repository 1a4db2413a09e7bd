"""Classifying a stream of texts in chunks, in one process or shared across the processes of an
``mpiexec`` job, with the results written in input order (``xprnn sentiment predict``).

In one process each chunk is read, classified and written before the next is read, so at most
one chunk is held whatever the size of the input.

Under ``mpiexec -n N`` the work goes in rounds: process 0 reads ``N`` chunks and hands chunk
``i`` to process ``i % N`` (``scatter``, keeping chunk 0 of the round itself); every process
classifies its chunk; process 0 collects the results in rank order (``gather``), which is input
order, and writes them. Process 0 alone reads the input, because standard input reaches only
process 0 (``mpiexec`` forwards it there), because one reader needs no shared file system nor N
decodings of the same file, and because a bad row is then found in one place. The texts are
small beside the work of classifying them, so sending them costs little. Each round holds at
most ``N`` chunks in process 0 and one in every other process.

An error in any process (a model that does not load, a bad row, a failed write, Ctrl-C, a bug)
is reported to process 0 at the next collective step (:func:`agree` before the rounds, the
rounds' own messages after); process 0 then tells every process to stop, and raises it, so the
job ends with one message, no process waits forever and no output is left half-written.
"""

from __future__ import annotations

import itertools
import traceback

import numpy as np

from ._common import CLIError

__all__ = ["chunks", "classify", "agree", "Rounds"]

_STOP = "stop"


def chunks(items, size):
    """Lists of up to ``size`` consecutive items of the iterable ``items``, read as needed."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def classify(model, meta, vocab, texts, batch_size, partner=None):
    """Class probabilities ``(len(texts), classes)`` (NumPy float64) of ``texts``, in their
    order: the recurrent model's, blended with its ``partner`` when given
    (:mod:`xprnn.cli._blend`). The texts are batched by length (fewer padded steps); a text's
    result does not depend on its batch beyond round-off (BLAS may sum in another order for
    another batch shape, e.g. a matrix-vector product for a batch of one), and the batches
    depend on the chunk alone, so the same chunks give the same bytes in any process."""
    from ..backend import to_numpy
    from . import _blend
    from . import _sentiment_data as sd

    tokens = sd.tokenize(texts, meta)
    if partner is not None:
        return np.exp(_blend.log_proba(model, meta, vocab, tokens, batch_size, partner))
    return _blend.recurrent_rows(model, meta, vocab, tokens, batch_size,
                                 lambda x, lengths: to_numpy(model.predict_proba(x, lengths)))


class Rounds:
    """Classify a stream chunk by chunk (:meth:`run`), alone or with the processes of ``team``
    (a :class:`~xprnn.training.parallel.DataParallel`, or ``None``).

    In process 0, enter it before opening the input and the output: an error there, before the
    rounds start, then tells the other processes (waiting for their first chunk) to stop, and is
    raised as one that every process has seen, so the job ends without an ``Abort``.
    """

    def __init__(self, team=None):
        self.team, self.started = team, False

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        t = self.team
        if error is None or self.started or t is None or t.rank != 0:
            return False
        t.comm.scatter([(_STOP, _code(error))] * t.size, root=0)
        if isinstance(error, CLIError):
            error.everywhere = True
        return False

    def run(self, items, classify_texts, write, *, chunk_size):
        """Classify ``items`` (an iterable of ``(line, text)``, read as it goes) chunk by chunk
        and ``write(chunk, proba)`` each chunk's results in input order.

        ``items`` and ``write`` are used in process 0 only (pass ``None`` elsewhere);
        ``classify_texts(texts) -> proba`` in every process. Returns the exit status of this
        process: 0 once all is written; process 0 raises what went wrong in any process."""
        self.started = True
        if self.team is None:
            for chunk in chunks(items, chunk_size):
                write(chunk, classify_texts([text for _, text in chunk]))
            return 0
        stream = chunks(items, chunk_size) if self.team.rank == 0 else None
        return _rounds(self.team, stream, classify_texts, write)


def agree(team, fn):
    """``(fn(), None)`` in every process once ``fn()`` has returned in all of them; if it raised
    in any, process 0 raises that error (naming the process) and the others get
    ``(None, exit status)``, so the job ends with one message and no ``Abort`` (which would kill
    process 0 with its temporary output open). Without ``team``, ``fn()`` as it is."""
    if team is None:
        return fn(), None
    failed = None
    try:
        result = fn()
    except BaseException as e:
        result, failed = None, e
        if team.rank != 0 and not isinstance(e, CLIError):
            traceback.print_exc()
    infos = team.comm.allgather(None if failed is None else (
        f"{type(failed).__name__}: {failed}" if not isinstance(failed, CLIError) else str(failed),
        _code(failed)))
    first = next(((r, info) for r, info in enumerate(infos) if info is not None), None)
    if first is None:
        return result, None
    r, (message, code) = first
    if team.rank != 0:
        return None, code
    if r == 0:
        if isinstance(failed, CLIError):
            failed.everywhere = True
        raise failed
    raise CLIError(f"process {r} of {team.size}: {message}", code, everywhere=True)


def _code(error):
    if isinstance(error, CLIError):
        return error.code
    return 130 if isinstance(error, KeyboardInterrupt) else 1


def _rounds(team, stream, classify_texts, write):
    comm, n, rank = team.comm, team.size, team.rank
    failure = None  # process 0: the error to raise once every process has stopped
    batch = []
    while True:
        parts = None
        if rank == 0:
            if failure is None:
                try:
                    batch = list(itertools.islice(stream, n))
                except BaseException as e:  # a bad row, Ctrl-C: stop everyone, then raise
                    failure = e
            if failure is not None or not batch:
                parts = [(_STOP, 0 if failure is None else _code(failure))] * n
            else:  # the texts alone travel; process 0 keeps their lines
                parts = [("chunk", [text for _, text in c]) for c in batch]
                parts += [("chunk", [])] * (n - len(batch))
        kind, mine = comm.scatter(parts, root=0)
        if kind == _STOP:
            break
        try:
            out = ("ok", classify_texts(mine) if mine else None)
        except BaseException as e:
            if rank == 0:
                out, failure = ("failed", None), e
            else:
                traceback.print_exc()
                out = ("failed", (type(e).__name__, str(e), _code(e)))
        results = comm.gather(out, root=0)
        if rank != 0 or failure is not None:
            continue
        failed = [(r, info) for r, (status, info) in enumerate(results) if status == "failed"]
        if failed:
            r, (name, message, code) = failed[0]
            failure = CLIError(f"process {r} of {n} failed: {name}: {message}", code)
            continue
        try:
            for chunk, (_, proba) in zip(batch, results, strict=False):
                write(chunk, proba)
        except BaseException as e:
            failure = e
    if rank != 0:
        return mine  # the exit status process 0 sent with the stop
    if failure is not None:
        if isinstance(failure, CLIError):
            failure.everywhere = True  # every process has stopped: nothing to abort
        raise failure
    return 0
