"""Seeded random numbers on any backend (the Array API standard has no random module).

This is the one place that reaches for a concrete library's generator, so the maths (dropout)
only asks for ``uniform(shape, dtype, xp=xp, device=device)``. Each backend draws with its own
generator, on its own device, so no random array crosses the host/device boundary:

- NumPy: ``numpy.random.default_rng(seed)``;
- CuPy: ``cupy.random.default_rng(seed)``, created on the target GPU;
- PyTorch: a ``torch.Generator`` on the target device, ``manual_seed(seed)``;
- anything else (array-api-strict, ...): NumPy's stream, copied over with ``from_numpy``, so
  array-api-strict draws exactly the numbers NumPy draws.

A :class:`Generator` keeps one stream per (backend, device), all started from the same seed:
the same seed gives the same sequence of draws on a given backend, but different backends give
different numbers.
"""

from __future__ import annotations

import secrets

import numpy as np
from array_api_compat import is_cupy_namespace, is_numpy_namespace, is_torch_namespace

from .namespace import as_dtype, backend_name, dtype_name, resolve
from .transfer import from_numpy

__all__ = ["Generator"]


class Generator:
    """Uniform random numbers in ``[0, 1)`` on any backend, seeded from an int.

    Parameters
    ----------
    seed : int, optional
        Non-negative integer below ``2**64``; ``None`` draws a fresh seed from the OS.
    xp : module, namespace or array, optional
        Default target backend of :meth:`uniform` (NumPy when not given).
    device : optional
        Default target device.
    """

    def __init__(self, seed=None, *, xp=None, device=None):
        if seed is None:
            seed = secrets.randbits(63)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        if not 0 <= int(seed) < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        self.seed = int(seed)
        self._target = (xp, device)
        self._streams = {}  # (backend, device) -> that backend's generator
        self._pending = {}  # (backend, device) -> saved state to apply when the stream starts

    def __repr__(self):
        return f"Generator(seed={self.seed})"

    def _stream(self, xp, device):
        """This backend's generator for ``device``, created (from ``self.seed``) on first use."""
        key = (backend_name(xp), str(device))
        g = self._streams.get(key)
        if g is None:
            if is_torch_namespace(xp):
                import torch

                g = torch.Generator(device=device).manual_seed(self.seed)
            elif is_cupy_namespace(xp):
                import cupy

                with cupy.cuda.Device(getattr(device, "id", device)):
                    g = cupy.random.default_rng(self.seed)
            else:  # NumPy itself, or NumPy's stream copied to the backend
                g = np.random.default_rng(self.seed)
            saved = self._pending.pop(key, None)
            if saved is not None:
                _set_stream_state(g, saved)
            self._streams[key] = g
        return g

    def get_state(self):
        """The seed and the position of every stream drawn from so far, as JSON-able data, so
        that :meth:`set_state` continues the very same draws (a resumed training run)."""
        streams = {f"{b}|{d}": _stream_state(g) for (b, d), g in self._streams.items()}
        streams.update({f"{b}|{d}": s for (b, d), s in self._pending.items()})
        return {"seed": self.seed, "streams": streams}

    def set_state(self, state):
        """Continue from what :meth:`get_state` returned (streams resume on first use)."""
        self.seed = int(state["seed"])
        self._streams = {}
        self._pending = {tuple(k.split("|", 1)): v for k, v in state["streams"].items()}
        return self

    def uniform(self, shape, dtype=None, *, xp=None, device=None):
        """Array of ``shape`` filled with independent draws from ``U[0, 1)``.

        Parameters
        ----------
        shape : tuple of int
        dtype : float dtype or str, optional
            ``float32`` (default) or ``float64``, of any backend or as a string.
        xp, device : optional
            Target backend (module, namespace or array) and device; default: the ones given to
            the constructor.

        Returns
        -------
        u : array, shape ``shape``, on backend ``xp`` and ``device``.
        """
        if xp is None and device is None:
            xp, device = self._target
        if xp is None or device is None or not hasattr(xp, "asarray"):
            xp, device = resolve(xp, device)  # skipped when both are given: no probe array
        shape = tuple(int(n) for n in shape)
        name = dtype_name(dtype if dtype is not None else "float32")
        g = self._stream(xp, device)
        if is_torch_namespace(xp):
            import torch

            return torch.rand(shape, generator=g, dtype=as_dtype(name, xp), device=device)
        if is_cupy_namespace(xp):
            import cupy

            with cupy.cuda.Device(getattr(device, "id", device)):
                return g.random(shape, dtype=np.dtype(name))
        u = g.random(shape, dtype=name)
        return u if is_numpy_namespace(xp) else from_numpy(u, xp, device)


def _stream_state(g):
    """JSON-able position of one backend generator."""
    if isinstance(g, np.random.Generator):
        return {"numpy": g.bit_generator.state}
    if type(g).__module__.startswith("torch"):
        return {"torch": [int(b) for b in g.get_state().tolist()]}
    # CuPy's generators expose no portable state: a resumed stream starts again from the seed
    return {"restart": type(g).__name__}


def _set_stream_state(g, saved):
    if "numpy" in saved and isinstance(g, np.random.Generator):
        g.bit_generator.state = saved["numpy"]
    elif "torch" in saved and type(g).__module__.startswith("torch"):
        import torch

        g.set_state(torch.tensor(saved["torch"], dtype=torch.uint8))
    elif "restart" not in saved:
        raise ValueError(f"a saved random state of kind {sorted(saved)} does not fit a "
                         f"{type(g).__name__} generator")
