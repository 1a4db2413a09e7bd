"""Shared fixtures: every test that takes ``xp`` runs on the backend chosen with ``--backend``.

``pytest --backend numpy`` (default), ``array_api_strict``, ``torch`` (CPU tensors through
array-api-compat) or ``cupy`` (skipped with its reason when no CUDA device is present).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

BACKENDS = ("numpy", "array_api_strict", "torch", "cupy")
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
    elif backend == "array_api_strict":
        xp = importlib.import_module("array_api_strict")
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


@pytest.fixture
def asarray(xp):
    """Move a NumPy array (built in the test) to the backend under test."""
    from xprnn.backend import from_numpy

    return lambda a, dtype=None: from_numpy(np.asarray(a), xp, dtype=dtype)


@pytest.fixture(scope="session")
def shared_data():
    """``../shared/data``, or a skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data sets not found at {SHARED_DATA} (../shared/data beside the repo)")
    return SHARED_DATA
