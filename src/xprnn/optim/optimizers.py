"""Optimizers over dicts of arrays: SGD, Adagrad, Adam, AdamW.

Contract: ``new_params = opt.step(params, grads)`` takes ``{name: array}`` dicts and returns a
*new* dict; no input array is modified. Parameters with no gradient (missing or ``None``) are
passed through untouched and their state does not advance, as in ``torch.optim``. Per-name state
(moments, step count) lives in the optimizer. The maths follows ``torch.optim`` (PyTorch 2.x,
``foreach=False``, ``maximize=False``, ``amsgrad=False``) step for step; each class's
``_update`` holds it, the base class the bookkeeping.

``lr`` is a float or a callable ``lr(step) -> float`` of the number of :meth:`Optimizer.step`
calls made before (``0`` on the first step); :mod:`xprnn.optim.schedules` builds such callables.

A step reaches a model through :meth:`xprnn.nn.Module.update`, on the device:
``model.update(opt.step(model.state_dict(), grads))``.
"""

from __future__ import annotations

import math
import numbers

from array_api_compat import is_array_api_obj

from ..backend import from_numpy, namespace, resolve, to_numpy

__all__ = ["Optimizer", "SGD", "Adagrad", "Adam", "AdamW"]


def _check(ok, what, value):
    if not ok:
        raise ValueError(f"Invalid {what}: {value}")


def _is_number(x):
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _check_lr(lr):
    if not callable(lr):
        _check(_is_number(lr) and lr >= 0, "learning rate", lr)
    return lr


def _check_nonneg(name, value):
    _check(_is_number(value) and value >= 0, f"{name} value", value)
    return float(value)


def _check_betas(betas):
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"Invalid betas: expected a pair (beta1, beta2), got {betas!r}")
    for i, b in enumerate(betas):
        _check(_is_number(b) and 0 <= b < 1, f"beta parameter at index {i}", b)
    return float(betas[0]), float(betas[1])


class Optimizer:
    """Bookkeeping shared by all optimizers: lr schedule, per-name state, input checks.

    Subclasses define ``_init_state(p, *, xp) -> dict`` and
    ``_update(p, g, state, lr, *, xp) -> (new_p, new_state)``, both pure.

    Attributes
    ----------
    lr_scale : callable ``(name, step) -> float`` or None
        Multiplies the learning rate of parameter ``name`` at step ``step`` (e.g.
        :func:`xprnn.optim.layerwise`: smaller rates for lower layers, frozen layers at 0). A
        parameter whose rate is 0 is frozen: neither it nor its state changes.
    """

    lr_scale = None

    def __init__(self, lr):
        self.lr = _check_lr(lr)
        self.step_count = 0  # step() calls so far; the argument of a callable lr
        self.state = {}  # name -> dict of arrays and ints

    def current_lr(self):
        """Learning rate the next :meth:`step` uses."""
        lr = self.lr(self.step_count) if callable(self.lr) else self.lr
        _check(_is_number(lr) and lr >= 0, f"learning rate at step {self.step_count}", lr)
        return float(lr)

    def step(self, params, grads):
        """One update; returns a new ``{name: array}`` dict.

        Parameters
        ----------
        params : dict of str to array
        grads : dict of str to array or None
            Same names and shapes as ``params``; a missing (or ``None``) entry leaves that
            parameter and its state unchanged.

        Returns
        -------
        new_params : dict of str to array
            Every entry of ``params``, updated where a gradient was given.
        """
        unknown = sorted(set(grads) - set(params))
        if unknown:
            raise KeyError(f"grads has entries for unknown parameters {unknown}")
        todo = [(k, params[k], grads[k]) for k in params if grads.get(k) is not None]
        if not todo:
            self.step_count += 1
            return dict(params)
        arrays = [a for _, p, g in todo for a in (p, g)]
        names = [f"{w}[{k!r}]" for k, _, _ in todo for w in ("params", "grads")]
        xp = namespace(*arrays, names=names)
        self._check_state_with(todo[0][0], todo[0][1])
        lr, scale = self.current_lr(), self.lr_scale
        new = dict(params)
        for k, p, g in todo:
            lr_k = lr if scale is None else lr * scale(k, self.step_count)
            if lr_k == 0:  # frozen
                continue
            if tuple(g.shape) != tuple(p.shape):
                raise ValueError(
                    f"grads[{k!r}] has shape {tuple(g.shape)}, but params[{k!r}] has "
                    f"{tuple(p.shape)}"
                )
            state = self.state.get(k)
            if state is None:
                state = self._init_state(p, xp=xp)
            new[k], self.state[k] = self._update(p, g, state, lr_k, xp=xp)
        self.step_count += 1
        return new

    def _check_state_with(self, name, p):
        """A clear error when the state lives elsewhere than the parameters (one parameter's
        state is checked: all of it moves together)."""
        held = [v for v in self.state.get(name, {}).values() if is_array_api_obj(v)]
        if not held:
            return
        try:
            namespace(p, *held, names=[f"params[{name!r}]"] + [f"optimizer state of {name!r}"]
                      * len(held))
        except (TypeError, ValueError) as e:
            raise type(e)(f"{e}. The optimizer state must follow the parameters: after "
                          "model.to(...), call optimizer.to(...) with the same target") from None

    def to(self, target=None, device=None):
        """Move every state array (moments, accumulators) to another backend or device, like
        :meth:`xprnn.nn.Module.to`; returns ``self``."""
        xp, dev = resolve(target, device)
        self.state = {k: {n: from_numpy(to_numpy(v), xp, dev) if is_array_api_obj(v) else v
                          for n, v in st.items()} for k, st in self.state.items()}
        return self

    def state_dict(self):
        """``{"step_count": int, "state": {name: {key: array or int}}}`` (arrays not copied)."""
        return {"step_count": self.step_count, "state": {k: dict(v) for k, v in self.state.items()}}

    def load_state_dict(self, state_dict):
        """Restore what :meth:`state_dict` returned; returns ``self``."""
        self.step_count = int(state_dict["step_count"])
        self.state = {k: dict(v) for k, v in state_dict["state"].items()}
        return self

    def _init_state(self, p, *, xp):
        return {}

    def _update(self, p, g, state, lr, *, xp):
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    ``g += wd * p``; ``b = g`` on the first step, else ``b = mu * b + (1 - dampening) * g``;
    ``g = g + mu * b`` (Nesterov) or ``g = b``; ``p -= lr * g``.
    """

    def __init__(self, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(lr)
        self.momentum = _check_nonneg("momentum", momentum)
        self.dampening = float(dampening)
        self.weight_decay = _check_nonneg("weight_decay", weight_decay)
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        self.nesterov = bool(nesterov)

    def _update(self, p, g, state, lr, *, xp):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            b = state.get("momentum_buffer")
            # torch starts the buffer at the first gradient itself, without dampening
            b = g if b is None else self.momentum * b + (1 - self.dampening) * g
            state = {"momentum_buffer": b}
            g = g + self.momentum * b if self.nesterov else b
        return p - lr * g, state


class Adagrad(Optimizer):
    """Adagrad: per-element step ``lr / (1 + (t - 1) * lr_decay) / (sqrt(sum g^2) + eps)``."""

    def __init__(
        self, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10
    ):
        super().__init__(lr)
        self.lr_decay = _check_nonneg("lr_decay", lr_decay)
        self.weight_decay = _check_nonneg("weight_decay", weight_decay)
        self.initial_accumulator_value = _check_nonneg(
            "initial_accumulator_value", initial_accumulator_value
        )
        self.eps = _check_nonneg("epsilon", eps)

    def _init_state(self, p, *, xp):
        return {"step": 0, "sum": xp.full_like(p, self.initial_accumulator_value)}

    def _update(self, p, g, state, lr, *, xp):
        t = state["step"] + 1
        if self.weight_decay:
            g = g + self.weight_decay * p
        clr = lr / (1 + (t - 1) * self.lr_decay)
        s = state["sum"] + g * g
        return p - clr * (g / (xp.sqrt(s) + self.eps)), {"step": t, "sum": s}


class Adam(Optimizer):
    """Adam with bias correction and L2 weight decay added to the gradient (``torch.optim.Adam``).

    ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``;
    ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
    """

    decoupled = False  # AdamW: decay the parameter itself instead of adding wd * p to g

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(lr)
        self.betas = _check_betas(betas)
        self.eps = _check_nonneg("epsilon", eps)
        self.weight_decay = _check_nonneg("weight_decay", weight_decay)

    def _init_state(self, p, *, xp):
        return {"step": 0, "exp_avg": xp.zeros_like(p), "exp_avg_sq": xp.zeros_like(p)}

    def _update(self, p, g, state, lr, *, xp):
        b1, b2 = self.betas
        t = state["step"] + 1
        if self.weight_decay:
            if self.decoupled:
                p = p * (1 - lr * self.weight_decay)
            else:
                g = g + self.weight_decay * p
        m = state["exp_avg"] + (1 - b1) * (g - state["exp_avg"])  # torch's lerp form
        v = b2 * state["exp_avg_sq"] + (1 - b2) * (g * g)
        step_size = lr / (1 - b1**t)
        denom = xp.sqrt(v) / math.sqrt(1 - b2**t) + self.eps
        return p - step_size * (m / denom), {"step": t, "exp_avg": m, "exp_avg_sq": v}


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p *= 1 - lr * wd`` before the Adam step."""

    decoupled = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(lr, betas=betas, eps=eps, weight_decay=weight_decay)
