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
on POSIX and Windows), so a crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import numpy as np
import safetensors
import safetensors.numpy as st_numpy

from ._version import __version__
from .backend import dtype_name, resolve, to_numpy
from .nn.module import Module

__all__ = ["save", "load", "WEIGHTS_NAME", "CONFIG_NAME"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "xprnn"


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


# -- atomic writing ----------------------------------------------------------------------------


def _atomic_write(target: Path, write):
    """Call ``write(tmp_path)``, fsync the result and rename it over ``target``.

    The temporary file sits in ``target``'s directory (a rename across file systems would not be
    atomic) and is removed if anything fails, so neither a half-written file nor a stray
    temporary is ever left behind.
    """
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    # O_EXCL reserves the name; mode 0o666 lets the umask set the final permissions
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(tmp)
        # the safetensors writer re-creates the file as 0600; give it the usual permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb+") as f:  # fsync through any descriptor flushes the file's data
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path):
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    flag = getattr(os, "O_DIRECTORY", None)
    if flag is None:
        return
    try:
        fd = os.open(directory, os.O_RDONLY | flag)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a directory; the file itself was synced
        pass
    finally:
        os.close(fd)


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
        ``config.json``; each replaces its old version atomically.

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
    _atomic_write(directory / WEIGHTS_NAME,
                  lambda tmp: st_numpy.save_file(tensors, tmp, metadata=header))
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


def _read(file: Path):
    """``(metadata, {name: NumPy array})``; any safetensors failure becomes a ``ValueError``."""
    try:
        with safetensors.safe_open(file, framework="numpy") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # SafetensorError, OSError, unsupported dtypes...
        raise ValueError(f"{file}: not a readable safetensors file (truncated or corrupt?): "
                         f"{type(e).__name__}: {e}") from None
    return metadata, tensors


def _parse_header(file, metadata):
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{file}: not an xprnn checkpoint (metadata format is "
                         f"{metadata.get('format')!r}, expected {FORMAT!r})")
    name = metadata.get("class")
    cls = Module.registered(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"{file}: unknown model class {name!r}; expected one of "
                         f"{sorted(Module.registered())}")
    fields = {}
    for key in ("config", "meta"):
        try:
            fields[key] = json.loads(metadata.get(key, "{}"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{file}: metadata {key!r} is not valid JSON: {e}") from None
        if not isinstance(fields[key], dict):
            raise ValueError(f"{file}: metadata {key!r} must be a JSON object, "
                             f"got {type(fields[key]).__name__}")
    return cls, fields["config"], fields["meta"]


def _check_dtypes(file, tensors):
    """The float dtype name every tensor shares (a clear error for any other)."""
    seen = {}
    for k, v in tensors.items():
        if v.dtype not in (np.float32, np.float64):
            raise ValueError(f"{file}: tensor {k!r} has dtype {v.dtype}, expected float32 or "
                             "float64")
        seen.setdefault(v.dtype.name, k)
    if len(seen) > 1:
        raise ValueError(f"{file}: tensors mix dtypes ({seen['float32']!r} is float32, "
                         f"{seen['float64']!r} is float64)")
    return next(iter(seen), "float32")


def _check_tensors(file, tensors, expected):
    """Raise unless ``tensors`` has exactly the names and shapes of ``expected``."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{file}: tensors do not match the architecture: missing {missing}, "
                         f"unexpected {unexpected}")
    for k, ref in expected.items():
        if tuple(tensors[k].shape) != tuple(ref.shape):
            raise ValueError(f"{file}: tensor {k!r} has shape {tuple(tensors[k].shape)}, "
                             f"expected {tuple(ref.shape)}")


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
        checkpoint, unknown class, bad config, or a tensor with the wrong name, shape or dtype.
    TypeError
        For a bad ``xp``, ``device`` or ``dtype`` (raised before the file is read).
    """
    # check the target first so that errors below can only come from the file
    resolve(xp, device)
    target = dtype_name(dtype) if dtype is not None else None
    file = _weights_file(path)
    metadata, tensors = _read(file)
    cls, config, meta = _parse_header(file, metadata)
    saved = _check_dtypes(file, tensors)
    try:
        model = cls(**config, xp=xp, device=device, dtype=target or saved)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{file}: config {config} does not build a {cls.__name__}: {e}") from None
    _check_tensors(file, tensors, model.state_dict())
    model.load_state_dict(tensors)
    model.meta = meta
    return model
