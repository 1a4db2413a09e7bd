"""Host transfer: the one place where arrays cross between NumPy and a backend's device.

Data enters a backend with :func:`from_numpy` (batches, initial weights, loaded checkpoints) and
leaves it with :func:`to_numpy` (saving, printing, sampling, tests). Nothing else in xprnn copies
between host and device, so a device that refuses implicit host copies (a GPU, or
array-api-strict's simulated ``Device("device1")``) runs the whole library.
"""

from __future__ import annotations

import numpy as np

__all__ = ["to_numpy", "from_numpy"]


def to_numpy(x):
    """A NumPy copy of any supported array, wherever it lives.

    The standard route is DLPack with an explicit copy to the CPU
    (``np.from_dlpack(x, device="cpu", copy=True)``), which works for CuPy, torch (CPU or CUDA),
    JAX and array-api-strict on any of its devices. Arrays whose library predates that form of
    the protocol fall back to the library's own host copy.
    """
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, np.generic):
        return np.asarray(x)
    try:
        return np.from_dlpack(x, device="cpu", copy=True)
    except (TypeError, BufferError, ValueError, AttributeError, NotImplementedError):
        pass
    mod = type(x).__module__
    if mod.startswith("cupy"):
        return x.get()
    if mod.startswith("torch"):  # e.g. tensors that require grad refuse DLPack
        return x.detach().cpu().numpy()
    return np.asarray(x)


def from_numpy(a, xp, device=None, dtype=None):
    """Copy a NumPy array (or anything NumPy can read) to backend ``xp`` on ``device``.

    Parameters
    ----------
    a : array_like
        Host data (a NumPy array, list, scalar).
    xp : namespace
        Target backend.
    device : optional
        Target device; the backend's default when omitted.
    dtype : str or dtype, optional
        Cast on the host first (``"float32"``, ``"float64"``, ``np.int64``, ...).
    """
    a = np.asarray(a)
    if dtype is not None:
        a = a.astype(np.dtype(dtype if isinstance(dtype, str) else _np_name(dtype)), copy=False)
    # array-api-strict and cupy accept NumPy arrays directly; torch needs a writable,
    # contiguous buffer (np.ascontiguousarray would turn 0-d arrays into 1-d).
    if not (a.flags.c_contiguous and a.flags.writeable):
        a = np.array(a, order="C", copy=True)
    return xp.asarray(a, device=device) if device is not None else xp.asarray(a)


def _np_name(dtype):
    """NumPy's name for a backend dtype (``torch.float32`` -> ``"float32"``)."""
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype).rsplit(".", 1)[-1]
