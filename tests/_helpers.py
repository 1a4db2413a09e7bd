"""Test helpers: finite differences and comparisons, independent of the code under test."""

from __future__ import annotations

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
