"""``Module``: the thin shell every layer and model shares.

A module holds named parameters (PyTorch's names and shapes), its constructor configuration,
its namespace, device and dtype, and can move to another backend. The maths lives in pure
functions elsewhere; modules only hold arrays and call them. Parameters are never mutated in
place: an optimizer step builds new arrays and :meth:`Module.update` swaps them in.

Every public subclass registers itself by class name (``__init_subclass__``), so a checkpoint can
rebuild any module from ``(class name, config)`` without a list of classes.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import as_dtype, backend_name, dtype_name, from_numpy, namespace, resolve, to_numpy

__all__ = ["Module"]

_REGISTRY = {}


class Module:
    """Base class: parameters in ``self.params``, sub-modules in ``self.children``, constructor
    arguments in ``self.config``.

    Subclasses call :meth:`_setup` in their constructor with their configuration (the
    JSON-able constructor arguments that rebuild them, no backend ones), the backend arguments
    and NumPy initial values of their parameters.
    """

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if not cls.__name__.startswith("_"):
            _REGISTRY[cls.__name__] = cls

    @classmethod
    def param_shapes(cls, config):
        """``{name: shape}`` of the parameters ``cls(**config)`` would have, worked out without
        building it (a checkpoint compares them with a file's header first); ``None`` where a
        class does not say (it is then built and compared after)."""
        return None

    @staticmethod
    def registered(name=None):
        """The module class registered as ``name`` (None if unknown), or all of them."""
        return dict(_REGISTRY) if name is None else _REGISTRY.get(name)

    def _setup(self, params_np, *, config, xp=None, device=None, dtype=None):
        self.config = dict(config)
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

    def update(self, params):
        """Swap in new parameter arrays, on the module's own backend and device, without copies.

        This is how an optimizer step reaches the model:
        ``model.update(opt.step(model.state_dict(), grads))``.

        Parameters
        ----------
        params : dict of str to array
            Some or all of the names of :meth:`state_dict`, each an array of the parameter's
            shape and dtype on the module's backend and device.

        Raises
        ------
        KeyError, ValueError, TypeError
            Naming an unknown parameter, a wrong shape or dtype, or an array from another
            backend or device; nothing is changed unless every entry is right.
        """
        if not params:
            return self
        own = self.state_dict()
        unknown = sorted(set(params) - set(own))
        if unknown:
            raise KeyError(f"{type(self).__name__} has no parameters {unknown}")
        names = [f"params[{k!r}]" for k in params]
        anyp = next(iter(own.values()), None)
        namespace(*params.values(), anyp, names=[*names, f"{type(self).__name__} parameters"])
        for k, v in params.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise ValueError(
                    f"params[{k!r}] has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}"
                )
            if v.dtype != own[k].dtype:
                raise TypeError(f"params[{k!r}] has dtype {dtype_name(v.dtype)}, expected "
                                f"{dtype_name(own[k].dtype)}")
        self._assign(params)
        return self

    def load_state_dict(self, state):
        """Replace every parameter with ``state[name]`` (any array type; moved to this backend).

        For weights coming from elsewhere (NumPy, torch, a file); it copies through the host.
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
        """Set the parameters named in ``flat`` (no checks, no copies)."""
        for k in self.params:
            if k in flat:
                self.params[k] = flat[k]
        for cname, child in self.children.items():
            p = cname + "."
            sub = {k[len(p):]: v for k, v in flat.items() if k.startswith(p)}
            if sub:
                child._assign(sub)

    def num_parameters(self) -> int:
        """Total number of scalar parameters."""
        return sum(math.prod(v.shape) for v in self.state_dict().values())

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
        for m in self.modules():
            m.xp, m.device, m.dtype = xp, dev, as_dtype(dt, xp)
        self._assign({k: from_numpy(v, xp, dev, dt) for k, v in state.items()})
        return self

    def modules(self):
        """This module and every sub-module, depth first."""
        yield self
        for child in self.children.values():
            yield from child.modules()

    def train(self, mode=True):
        """Training mode (dropout on); returns ``self``."""
        for m in self.modules():
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
