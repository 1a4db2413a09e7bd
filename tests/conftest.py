"""Shared fixtures: every test that takes ``xp`` runs on the backend chosen with ``--backend``.

``pytest --backend numpy`` (default), ``array_api_strict``, ``array_api_strict_device``
(array-api-strict on its simulated accelerator ``Device("device1")``, which refuses implicit
conversion to NumPy and mixing devices, as a GPU does), ``torch`` (CPU tensors through
array-api-compat), ``jax`` (CPU, with 64-bit floats enabled) or ``cupy``; a backend whose library
is missing (or, for cupy, without a CUDA device) skips with its reason.

Tests that build a layer or model on the backend pass ``xp=xp, device=device``, create their
backend arrays with ``asarray`` (which puts them on ``device``) and read results back with
:func:`xprnn.backend.to_numpy`.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

BACKENDS = ("numpy", "array_api_strict", "array_api_strict_device", "torch", "jax", "cupy")
SIMULATED_DEVICE = "device1"  # array-api-strict's stand-in for an accelerator
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_addoption(parser):
    parser.addoption(
        "--backend",
        default="numpy",
        choices=BACKENDS,
        help="array backend the xp fixture provides",
    )


def _load(backend):
    if backend == "cupy":
        cupy = pytest.importorskip("cupy", reason="cupy is not installed")
        try:
            n = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:  # no driver, no runtime
            pytest.skip(f"cupy is installed but no CUDA device is usable: {e}")
        if n == 0:
            pytest.skip("cupy is installed but no CUDA device is present")
        import array_api_compat.cupy as xp
    elif backend == "torch":
        pytest.importorskip("torch", reason="torch is not installed")
        import array_api_compat.torch as xp
    elif backend == "jax":
        jax = pytest.importorskip("jax", reason="jax is not installed")
        jax.config.update("jax_enable_x64", True)  # the float64 tests need it
        from array_api_compat import array_namespace

        xp = array_namespace(jax.numpy.zeros(1))
    elif backend in ("array_api_strict", "array_api_strict_device"):
        xp = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    else:
        import array_api_compat.numpy as xp
    return xp


@pytest.fixture(scope="session")
def backend(request):
    return request.config.getoption("--backend")


@pytest.fixture(scope="session")
def xp(backend):
    """The array namespace under test."""
    return _load(backend)


@pytest.fixture(scope="session")
def device(backend):
    """The device layers, models and arrays are put on: ``None`` (the backend's default) except
    for ``array_api_strict_device``, where it is ``array_api_strict.Device("device1")``."""
    if backend != "array_api_strict_device":
        return None
    array_api_strict = pytest.importorskip("array_api_strict")
    return array_api_strict.Device(SIMULATED_DEVICE)


@pytest.fixture
def asarray(xp, device):
    """Move a NumPy array (built in the test) to the backend and device under test."""
    from xprnn.backend import from_numpy

    return lambda a, dtype=None: from_numpy(np.asarray(a), xp, device=device, dtype=dtype)


@pytest.fixture(scope="session")
def shared_data():
    """``../shared/data``, or a skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data sets not found at {SHARED_DATA} (../shared/data beside the repo)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _python_owns_ctrl_c():
    """The Ctrl-C tests press it (``signal.raise_signal``) and expect Python's handler. A shell
    that runs a job in the background (``cmd &`` without job control) starts it with SIGINT
    ignored, and Python leaves an ignored SIGINT ignored: restore the handler for each test."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, previous)
