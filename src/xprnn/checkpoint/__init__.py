"""Checkpoints: a model's weights and architecture in one safetensors file, written atomically.

A checkpoint is a directory holding

- ``model.safetensors``: every parameter as a NumPy array under its PyTorch name
  (``embedding.weight``, ``rnn.weight_ih_l0``, ``fc.bias``, ...), and in the header's metadata
  ``{"format": "xprnn", "xprnn_version", "class", "config", "meta"}`` (``config`` and ``meta`` as
  JSON text). This file is the single source of truth: :func:`load` reads nothing else.
- ``config.json``: the same metadata, indented, for people to read.

There is no pickle anywhere, so loading a checkpoint never runs code, and PyTorch users can read
the weights with ``safetensors.torch.load_file``. Each file is written to a temporary file in the
same directory, flushed and ``fsync``-ed, then renamed over the old one with ``os.replace`` (atomic
on POSIX and Windows), so a crash mid-save leaves the previous checkpoint intact; the temporary
file of a killed save is removed by a later save or load in that directory (once untouched for
a minute with its writer gone, or for an hour; the rule is in ``xprnn/checkpoint/_io.py``). The
same model saved twice gives the same bytes.

:func:`load` treats the file as untrusted: it reads the header only (names, shapes, dtypes,
metadata), checks the config against it (every size an integer in a sane range, every
parameter the config implies present in the file with that shape), and only then builds the
model and reads the data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import safetensors

from .._version import __version__
from ..backend import dtype_name, resolve, to_numpy
from ..nn.module import Module
from ..nn.shapes import expected_shapes
from ._io import atomic_write as _atomic_write
from ._io import remove_stale_temporaries, write_safetensors

__all__ = ["save", "load", "WEIGHTS_NAME", "CONFIG_NAME"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "xprnn"
_FLOATS = {"F32": "float32", "F64": "float64"}
_OTHER = {"F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32", "I16": "int16",
          "I8": "int8", "U8": "uint8", "BOOL": "bool"}


# -- what can be saved -------------------------------------------------------------------------


def _header(model):
    """The metadata dict (str -> str) stored in the safetensors header."""
    name = type(model).__name__
    if not isinstance(model, Module) or Module.registered(name) is not type(model):
        raise TypeError(f"save expects an xprnn module (one of {sorted(Module.registered())}), "
                        f"got {type(model).__qualname__}")
    meta = getattr(model, "meta", None) or {}
    if not isinstance(meta, dict):
        raise TypeError(f"model.meta must be a dict, got {type(meta).__name__}")
    fields = {"config": model.config, "meta": meta}
    text = {}
    for key, value in fields.items():
        try:
            text[key] = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise TypeError(f"model.{key} must be JSON-serialisable: {e}") from None
    return {"format": FORMAT, "xprnn_version": __version__, "class": name, **text}


def save(model, path):
    """Save ``model`` (weights and architecture) to the checkpoint directory ``path``.

    Parameters
    ----------
    model : Module
        Any registered module (every public :class:`~xprnn.nn.module.Module` subclass registers
        itself): a model or a layer, on any backend and device; weights are copied to the host
        as NumPy arrays. Its ``config`` rebuilds it on :func:`load`.
        ``model.meta`` (a JSON-able dict, e.g. the vocabulary) is stored alongside.
    path : str or os.PathLike
        A directory, created if needed. ``model.safetensors`` is written first, then
        ``config.json``; each replaces its old version atomically. Stale temporary files of
        interrupted saves in it are removed first.

    Returns
    -------
    pathlib.Path
        The directory.
    """
    directory = Path(path)
    if directory.suffix == ".safetensors" or directory.is_file():
        raise ValueError(f"path must be a directory to hold {WEIGHTS_NAME}, got {str(path)!r}")
    header = _header(model)
    tensors = {k: np.ascontiguousarray(to_numpy(v)) for k, v in model.state_dict().items()}
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(directory)
    _atomic_write(directory / WEIGHTS_NAME,
                  lambda tmp: write_safetensors(tensors, tmp, metadata=header))
    readable = {**header, "config": json.loads(header["config"]),
                "meta": json.loads(header["meta"])}
    _atomic_write(directory / CONFIG_NAME,
                  lambda tmp: tmp.write_text(json.dumps(readable, indent=2) + "\n",
                                             encoding="utf-8"))
    return directory


# -- reading -----------------------------------------------------------------------------------


def _weights_file(path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS_NAME
        if not p.is_file():
            raise ValueError(f"{p}: no such file; is {str(path)!r} an xprnn checkpoint directory?")
    elif not p.is_file():
        raise ValueError(f"{p}: no such file or directory")
    return p


def _unreadable(file, e):
    return ValueError(f"{file}: not a readable safetensors file (truncated or corrupt?): "
                      f"{type(e).__name__}: {e}")


def _json(file, metadata, key):
    text = metadata.get(key, "{}")
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"{file}: metadata {key!r} is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, or an integer of too many digits
        raise ValueError(f"{file}: metadata {key!r} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{file}: metadata {key!r} must be a JSON object, "
                         f"got {type(value).__name__}")
    return value


def _parse_header(file, metadata):
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{file}: not an xprnn checkpoint (metadata format is "
                         f"{metadata.get('format')!r:.80}, expected {FORMAT!r})")
    name = metadata.get("class")
    cls = Module.registered(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"{file}: unknown model class {name!r:.80}; expected one of "
                         f"{sorted(Module.registered())}")
    return cls, _json(file, metadata, "config"), _json(file, metadata, "meta")


def _check_dtypes(file, dtypes):
    """The float dtype name every tensor shares (a clear error for any other)."""
    seen = {}
    for k, code in dtypes.items():
        if code not in _FLOATS:
            raise ValueError(f"{file}: tensor {k!r} has dtype {_OTHER.get(code, code)}, "
                             "expected float32 or float64")
        seen.setdefault(_FLOATS[code], k)
    if len(seen) > 1:
        raise ValueError(f"{file}: tensors mix dtypes ({seen['float32']!r} is float32, "
                         f"{seen['float64']!r} is float64)")
    return next(iter(seen), "float32")


def _check_tensors(file, shapes, expected, what="the architecture"):
    """Raise unless ``shapes`` has exactly the names and shapes of ``expected``."""
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{file}: tensors do not match {what}: missing {missing[:20]}, "
                         f"unexpected {unexpected[:20]}")
    for k, ref in expected.items():
        if tuple(shapes[k]) != tuple(ref):
            raise ValueError(f"{file}: tensor {k!r} has shape {tuple(shapes[k])}, expected "
                             f"{tuple(ref)} from {what}")


def load(path, xp=None, device=None, dtype=None):
    """Rebuild a model saved with :func:`save`, on any backend.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint directory, or its ``.safetensors`` file.
    xp : module or array, optional
        Target backend (``numpy``, ``torch``, ``cupy``, ``array_api_strict``, a compat namespace)
        or an array whose backend and device are taken. NumPy by default.
    device : optional
        Target device (the backend's default when omitted).
    dtype : {"float32", "float64"} or a backend float dtype, optional
        Parameter dtype; the saved one by default.

    Returns
    -------
    Module
        A fresh model of the saved class with the saved weights and ``meta``, in training mode
        as after construction (call ``.eval()`` for inference).

    Raises
    ------
    ValueError
        Naming the file and what is wrong: missing, truncated or corrupt file, not an xprnn
        checkpoint, unknown class, malformed metadata (not JSON, too deeply nested, a missing
        or mistyped config entry, a size out of range), or a tensor whose name, shape or dtype
        the config does not imply. All of it is checked from the header, before the model is
        built or any weight is read.
    TypeError
        For a bad ``xp``, ``device`` or ``dtype`` (raised before the file is read).
    """
    # check the target first so that errors below can only come from the file
    resolve(xp, device)
    target = dtype_name(dtype) if dtype is not None else None
    file = _weights_file(path)
    remove_stale_temporaries(file.parent)
    try:
        handle = safetensors.safe_open(file, framework="numpy")
    except Exception as e:  # SafetensorError, OSError...
        raise _unreadable(file, e) from None
    with handle as f:
        try:
            metadata = f.metadata() or {}
            names = list(f.keys())
            slices = {k: f.get_slice(k) for k in names}
            shapes = {k: tuple(s.get_shape()) for k, s in slices.items()}
            dtypes = {k: s.get_dtype() for k, s in slices.items()}
        except Exception as e:
            raise _unreadable(file, e) from None
        cls, config, meta = _parse_header(file, metadata)
        saved = _check_dtypes(file, dtypes)
        try:
            expected = expected_shapes(cls, config)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{file}: config {json.dumps(config)[:200]} does not build a "
                             f"{cls.__name__}: {e}") from None
        if expected is not None:  # checked before anything is allocated
            _check_tensors(file, shapes, expected, f"the config of a {cls.__name__}")
        try:
            model = cls(**config, xp=xp, device=device, dtype=target or saved)
        except Exception as e:  # any failure of a config the header did not rule out
            raise ValueError(f"{file}: config {json.dumps(config)[:200]} does not build a "
                             f"{cls.__name__}: {type(e).__name__}: {e}") from None
        own = {k: v.shape for k, v in model.state_dict().items()}
        _check_tensors(file, shapes, own)
        try:
            tensors = {k: f.get_tensor(k) for k in names}
        except Exception as e:
            raise _unreadable(file, e) from None
    model.load_state_dict(tensors)
    model.meta = meta
    return model
