"""The command line under ``mpiexec``: the data-parallel team of this process, ending the whole
job on an error in one process."""

from __future__ import annotations

import os
import sys
import time

from ._common import CLIError

__all__ = ["current", "follower", "end_job"]


_TEAM = []  # the DataParallel of this process once asked (None in a single process)


def current():
    """The :class:`~xprnn.training.parallel.DataParallel` of a run under ``mpiexec`` with
    several processes (``XPRNN_TRANSPORT``: host, cuda-mpi or nccl), else ``None``."""
    if not _TEAM:
        from ..training.parallel import DataParallel, world

        try:
            comm = world()
        except ImportError as e:
            raise CLIError(str(e)) from None
        _TEAM.append(None if comm is None else DataParallel(
            comm, transport=os.environ.get("XPRNN_TRANSPORT", "host")))
    return _TEAM[0]


def follower():
    """Whether this process is one of the processes 1.. of a data-parallel run (which print no
    notes); asks nothing of MPI that was not asked already."""
    return bool(_TEAM) and _TEAM[0] is not None and _TEAM[0].rank > 0


def end_job(error):
    """Under ``mpiexec``, end every process after ``error`` (a :class:`CLIError`) in this one,
    unless all raised it together: the others would otherwise wait forever in the next
    collective operation. Nothing happens in a single process."""
    if error.everywhere:
        return
    try:
        team = current()
    except CLIError:  # launched by mpiexec without mpi4py: no other process waits on this one
        return
    if team is not None:
        print(f"xprnn: ending all {team.size} processes (error in process {team.rank})",
              file=sys.stderr, flush=True)
        time.sleep(0.5)  # let the launcher forward the messages before the job is torn down
        team.comm.Abort(error.code)
