"""``Module``: the thin shell every layer and model shares.

A module holds named parameters (PyTorch's names and shapes), knows its namespace, device and
dtype, and can move to another backend. The maths lives in pure functions elsewhere; modules only
hold arrays and call them. Parameters are never mutated in place: an optimizer step builds new
arrays and ``load_state_dict`` swaps them in.
"""

from __future__ import annotations

import numpy as np

from ._backend import as_dtype, backend_name, dtype_name, from_numpy, resolve, to_numpy

__all__ = ["Module"]


class Module:
    """Base class: parameters in ``self.params``, sub-modules in ``self.children``.

    Subclasses call :meth:`_setup` in their constructor with the backend arguments and NumPy
    initial values of their parameters.
    """

    def _setup(self, params_np, *, xp=None, device=None, dtype=None):
        self.xp, self.device = resolve(xp, device)
        self.dtype = as_dtype(dtype, self.xp)
        self.params = {
            k: from_numpy(v, self.xp, self.device, dtype_name(self.dtype))
            for k, v in params_np.items()
        }
        self.children = {}
        self.training = True

    # -- parameters -------------------------------------------------------------------------
    def state_dict(self):
        """All parameters by PyTorch name (sub-modules prefixed ``child.``), as backend arrays."""
        out = dict(self.params)
        for cname, child in self.children.items():
            out.update({f"{cname}.{k}": v for k, v in child.state_dict().items()})
        return out

    def load_state_dict(self, state):
        """Replace every parameter with ``state[name]`` (any array type; moved to this backend).

        Raises ``KeyError``/``ValueError`` naming missing, unexpected or misshaped entries; nothing
        is changed unless every entry is right.
        """
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise KeyError(
                f"state_dict does not match {type(self).__name__}: missing {missing}, "
                f"unexpected {unexpected}"
            )
        new = {}
        for k, ref in own.items():
            v = np.asarray(to_numpy(state[k]))
            if tuple(v.shape) != tuple(ref.shape):
                raise ValueError(
                    f"state_dict[{k!r}] has shape {tuple(v.shape)}, expected {tuple(ref.shape)}"
                )
            if not np.issubdtype(v.dtype, np.floating):
                raise TypeError(f"state_dict[{k!r}] must be floating point, got {v.dtype}")
            new[k] = from_numpy(v, self.xp, self.device, dtype_name(self.dtype))
        self._assign(new)
        return self

    def _assign(self, flat):
        """Set parameters from a flat ``{name: backend array}`` dict (no checks, no copies)."""
        for k in self.params:
            self.params[k] = flat[k]
        for cname, child in self.children.items():
            p = cname + "."
            child._assign({k[len(p):]: v for k, v in flat.items() if k.startswith(p)})

    def num_parameters(self) -> int:
        """Total number of scalar parameters."""
        return sum(int(np.prod(v.shape)) for v in self.state_dict().values())

    # -- backend ----------------------------------------------------------------------------
    def to(self, target=None, device=None, dtype=None):
        """Move every parameter to another backend, device or dtype, in place; returns ``self``.

        ``target`` is a module (``numpy``, ``cupy``, ``torch``, ``array_api_strict``), a namespace
        or an array whose backend and device are taken; ``None`` keeps the current backend.
        """
        xp, dev = (self.xp, self.device if device is None else device)
        if target is not None or device is not None:
            xp, dev = resolve(target if target is not None else self.xp, device)
        dt = dtype_name(dtype if dtype is not None else self.dtype)
        state = {k: to_numpy(v) for k, v in self.state_dict().items()}
        for m in self._modules():
            m.xp, m.device, m.dtype = xp, dev, as_dtype(dt, xp)
        self._assign({k: from_numpy(v, xp, dev, dt) for k, v in state.items()})
        return self

    def _modules(self):
        yield self
        for child in self.children.values():
            yield from child._modules()

    def train(self, mode=True):
        """Training mode (dropout on); returns ``self``."""
        for m in self._modules():
            m.training = mode
        return self

    def eval(self):
        """Evaluation mode (dropout off); returns ``self``."""
        return self.train(False)

    def __repr__(self):
        return (
            f"{type(self).__name__}({self.extra_repr()}, backend={backend_name(self.xp)}, "
            f"dtype={dtype_name(self.dtype)})"
        )

    def extra_repr(self) -> str:
        return ""
