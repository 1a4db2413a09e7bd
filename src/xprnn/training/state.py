"""The training state: everything a run needs to continue exactly where it stopped.

One safetensors file, written atomically (a crash mid-save keeps the previous one), holds

- the model's parameters, class and config;
- the optimizer's state (moments, accumulators, per-parameter and global step counts, hence the
  position of a learning-rate schedule);
- the parameters of the best epoch so far, when there was a validation split;
- a language model's recurrent state carried between batches, when stopped inside an epoch;
- as JSON in the header: the epoch and batch position, the running sums of the unfinished epoch,
  the best score and the patience count, the history, and the state of every random stream of
  the model (dropout) and of the data order.

Loading checks the file against the model and the optimizer it is loaded into (class, config,
parameter names and shapes) before changing anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import safetensors
import safetensors.numpy as st_numpy
from array_api_compat import is_array_api_obj

from .._version import __version__
from ..backend import Generator, from_numpy, to_numpy
from ..checkpoint import _atomic_write

__all__ = ["STATE_NAME", "ResumeError", "save_state", "load_state", "read_meta"]

STATE_NAME = "training_state.safetensors"
FORMAT = "xprnn-training-state"


def _generators(model):
    """``{"path.attr": Generator}`` of every random stream in the model's modules."""
    found = {}

    def walk(module, prefix):
        for attr, value in vars(module).items():
            if isinstance(value, Generator):
                found[f"{prefix}{attr}"] = value
        for name, child in module.children.items():
            walk(child, f"{prefix}{name}.")

    walk(model, "")
    return found


def save_state(path, model, optimizer, trainer, *, best=None, carry=None):
    """Write the training state file ``path`` (atomically).

    Parameters
    ----------
    path : str or Path
        The file (its folder is created).
    model : a model (any registered :class:`~xprnn.nn.module.Module`)
    optimizer : :class:`xprnn.optim.Optimizer`
    trainer : dict
        JSON-able position of the loop (epoch, batch, running sums, best score, history).
    best : dict of arrays, optional
        The best epoch's parameters.
    carry : array or tuple of arrays, optional
        A language model's state carried between batches.
    """
    tensors = {f"model/{k}": to_numpy(v) for k, v in model.state_dict().items()}
    scalars = {}
    opt = optimizer.state_dict()
    for name, entries in opt["state"].items():
        for key, v in entries.items():
            if is_array_api_obj(v):
                tensors[f"optimizer/{name}/{key}"] = to_numpy(v)
            else:
                scalars.setdefault(name, {})[key] = v
    for k, v in (best or {}).items():
        tensors[f"best/{k}"] = to_numpy(v)
    carried = () if carry is None else (carry if isinstance(carry, tuple) else (carry,))
    for i, v in enumerate(carried):
        tensors[f"carry/{i}"] = to_numpy(v)
    header = {
        "format": FORMAT, "xprnn_version": __version__, "model_class": type(model).__name__,
        "model_config": json.dumps(model.config), "model_meta": json.dumps(getattr(model, "meta",
                                                                                   {}) or {}),
        "optimizer": json.dumps({"class": type(optimizer).__name__,
                                 "step_count": opt["step_count"], "scalars": scalars}),
        "carry": json.dumps({"count": len(carried), "tuple": isinstance(carry, tuple)}),
        "rng": json.dumps({k: g.get_state() for k, g in _generators(model).items()}),
        "trainer": json.dumps(trainer, allow_nan=True),
    }
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda tmp: st_numpy.save_file(tensors, tmp, metadata=header))
    return path


class ResumeError(ValueError):
    """A training state that is missing, unreadable, or does not fit the model and optimizer
    it is loaded into (raised before anything is changed)."""


def _fail(path, why):
    raise ResumeError(f"{path}: cannot resume from this training state: {why}")


def _file(path):
    path = Path(path)
    if path.is_dir():
        path = path / STATE_NAME
    if not path.is_file():
        raise ResumeError(f"{path}: no training state to resume from (no such file)")
    return path


def read_meta(path):
    """The saved model's ``meta`` (the command line keeps its options there), read from the
    header alone: what a resumed run needs to rebuild the data and the model first."""
    path = _file(path)
    try:
        with safetensors.safe_open(path, framework="numpy") as f:
            header = f.metadata() or {}
        if header.get("format") != FORMAT:
            _fail(path, f"format is {header.get('format')!r}, expected {FORMAT!r}")
        meta = json.loads(header["model_meta"])
    except (KeyError, json.JSONDecodeError) as e:
        _fail(path, f"malformed header ({type(e).__name__}: {e})")
    except ResumeError:
        raise
    except Exception as e:  # SafetensorError, OSError
        raise ResumeError(f"{path}: not a readable training state ({type(e).__name__}: {e})"
                          ) from None
    return meta


def load_state(path, model, optimizer):
    """Load the state file ``path`` into ``model`` and ``optimizer`` (in place).

    Returns
    -------
    dict
        ``trainer`` (what :func:`save_state` was given), ``best`` (dict of arrays on the model's
        device, or None) and ``carry`` (array, tuple of arrays, or None).

    Raises
    ------
    ResumeError
        A ``ValueError`` naming the file and the mismatch (another model class or config,
        another optimizer, parameter names or shapes that differ) before anything is changed.
    """
    path = _file(path)
    try:
        with safetensors.safe_open(path, framework="numpy") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # SafetensorError, OSError: truncated or not safetensors
        raise ResumeError(f"{path}: not a readable training state ({type(e).__name__}: {e})"
                          ) from None
    if header.get("format") != FORMAT:
        _fail(path, f"format is {header.get('format')!r}, expected {FORMAT!r}")
    try:
        config = json.loads(header["model_config"])
        opt_info = json.loads(header["optimizer"])
        carry_info = json.loads(header["carry"])
        rng = json.loads(header["rng"])
        trainer = json.loads(header["trainer"])
    except (KeyError, json.JSONDecodeError) as e:
        _fail(path, f"malformed header ({type(e).__name__}: {e})")
    if header.get("model_class") != type(model).__name__ or config != model.config:
        _fail(path, f"it holds a {header.get('model_class')} with config {config}, not this "
                    f"{type(model).__name__} with config {model.config}")
    if opt_info["class"] != type(optimizer).__name__:
        _fail(path, f"it was trained with {opt_info['class']}, not {type(optimizer).__name__}")
    params = model.state_dict()
    saved = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    if set(saved) != set(params):
        _fail(path, f"parameter names differ: {sorted(set(saved) ^ set(params))}")
    state = {}
    for k, v in tensors.items():
        if k.startswith("optimizer/"):
            name, key = k[len("optimizer/"):].rsplit("/", 1)
            if name not in params or tuple(v.shape) != tuple(params[name].shape):
                _fail(path, f"optimizer state {name!r}/{key!r} of shape {tuple(v.shape)} fits "
                            "no parameter of the model")
            state.setdefault(name, {})[key] = from_numpy(v, model.xp, model.device, v.dtype)
    for name, entries in opt_info["scalars"].items():
        state.setdefault(name, {}).update(entries)
    model.load_state_dict(saved)
    optimizer.load_state_dict({"step_count": opt_info["step_count"], "state": state})
    gens = _generators(model)
    for key, g in gens.items():
        if key in rng:
            g.set_state(rng[key])

    def dev(v):
        return from_numpy(v, model.xp, model.device, model.dtype)

    best = {k[len("best/"):]: dev(v) for k, v in tensors.items() if k.startswith("best/")}
    carry = tuple(dev(tensors[f"carry/{i}"]) for i in range(carry_info["count"]))
    carry = (carry if carry_info["tuple"] else carry[0]) if carry else None
    return {"trainer": trainer, "best": best or None, "carry": carry}
