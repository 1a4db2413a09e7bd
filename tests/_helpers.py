"""Test helpers: finite differences and comparisons, independent of the code under test, and
runs under ``mpiexec`` with a timeout."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from array_api_compat import is_numpy_namespace

from xprnn.backend import to_numpy


def rel_error(a, b) -> float:
    """max |a - b| / max(|a|, |b|, tiny): one number per tensor, robust to near-zero entries."""
    a = np.asarray(to_numpy(a), dtype=np.float64)
    b = np.asarray(to_numpy(b), dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0), 1e-12)
    return float(np.max(np.abs(a - b), initial=0.0) / scale)


def numeric_grad(f, x_np, eps=1e-6):
    """Central finite differences of scalar ``f(x_np)`` for every element of NumPy ``x_np``."""
    x_np = np.array(x_np, dtype=np.float64)
    g = np.zeros_like(x_np)
    flat = x_np.reshape(-1)
    gf = g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f(x_np)
        flat[i] = old - eps
        fm = f(x_np)
        flat[i] = old
        gf[i] = (fp - fm) / (2 * eps)
    return g


def other_backend(xp):
    """A namespace of another backend than ``xp``, for mixed-backend errors: NumPy, or
    array-api-strict when ``xp`` is NumPy (skipped where array-api-strict is not installed)."""
    if is_numpy_namespace(xp):
        return pytest.importorskip("array_api_strict")
    return np


MPI_TIMEOUT = 120  # seconds for one mpiexec run; each takes a few


def mpiexec():
    beside = Path(sys.executable).parent / "mpiexec"  # the mpich wheel's, in this environment
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def need_mpi():
    """Skip the test, saying why, where mpi4py or mpiexec is missing."""
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed (pip install 'xprnn[mpi]')")
    if mpiexec() is None:
        pytest.skip("no mpiexec found (pip install mpich, or a system MPI)")


def mpirun(cwd, *argv, n=2):
    """``mpiexec -n n argv``: ``(returncode, stdout, stderr)``; a run that outlives
    :data:`MPI_TIMEOUT` is killed with all its processes and fails the test."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([mpiexec(), "-n", str(n), *map(str, argv)], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=MPI_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"mpiexec -n {n} {' '.join(map(str, argv))} hung for {MPI_TIMEOUT} s:\n"
                    f"{err[-3000:]}")
    return proc.returncode, out, err
