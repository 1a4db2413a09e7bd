"""Writing checkpoint files: atomically (temporary file, ``fsync``, rename), byte for byte the
same for the same model (a safetensors file whose header is written in sorted order), and the
clean-up of temporary files that an interrupted save left behind.

Temporary files are named ``.{target}.{pid}.{12 hex}.tmp`` beside their target (older versions
wrote ``.{target}.{12 hex}.tmp``). A save or load in a folder removes those that are stale:

- not modified for :data:`STALE_AFTER` seconds (a writer writes its file in one go, so a live
  save touches it all along) **and** whose writer is not a running process on this machine (or
  whose name carries no process id);
- or not modified for :data:`ABANDONED_AFTER` seconds, whoever wrote them (a process id may be
  reused, or belong to another machine sharing the folder).

So a concurrent save from another process is left alone while it runs, and a killed one's file
goes at the next save or load in that folder. Clean-up never fails a save or load: a file that
cannot be removed is left.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import struct
import time
from pathlib import Path

import numpy as np

__all__ = ["atomic_write", "temporary_name", "write_safetensors", "remove_stale_temporaries",
           "STALE_AFTER", "ABANDONED_AFTER"]

STALE_AFTER = 60.0
ABANDONED_AFTER = 3600.0
_TEMPORARY = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<pid>\d+)\.)?[0-9a-f]{12}\.tmp$")
_DTYPES = {"float16": "F16", "float32": "F32", "float64": "F64", "int32": "I32", "int64": "I64",
           "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def temporary_name(target: Path) -> Path:
    """The name of a temporary file for ``target``, beside it, that
    :func:`remove_stale_temporaries` recognises: ``.{target}.{pid}.{12 hex}.tmp``."""
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


def atomic_write(target: Path, write):
    """Call ``write(tmp_path)``, fsync the result and rename it over ``target``.

    The temporary file sits in ``target``'s directory (a rename across file systems would not be
    atomic) and is removed if anything fails, so neither a half-written file nor a stray
    temporary is left behind by an error; one left by a killed process is removed later
    (:func:`remove_stale_temporaries`).
    """
    tmp = temporary_name(target)
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


def write_safetensors(tensors, path, metadata):
    """Write ``tensors`` (name -> NumPy array) and ``metadata`` (str -> str) in the safetensors
    format, deterministically: metadata keys and tensors in sorted order (the reference writer
    keeps the metadata in a hash map, whose order changes from run to run)."""
    header = {"__metadata__": dict(sorted(metadata.items()))}
    arrays, offset = [], 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name])
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))  # the format is little-endian
        if a.dtype.name not in _DTYPES:
            raise TypeError(f"tensor {name!r}: dtype {a.dtype} cannot be saved")
        header[name] = {"dtype": _DTYPES[a.dtype.name], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        arrays.append(a)
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the reference writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for a in arrays:
            f.write(a.reshape(-1).view(np.uint8).data if a.size else b"")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (``True`` when it cannot be told)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, under another user
        return True
    return True


def remove_stale_temporaries(directory, now=None, target=None):
    """Remove the stale temporary files of interrupted saves in ``directory`` (rule above);
    returns the paths removed. With ``target`` (a file name), only that file's temporaries,
    and only those named with a process id: in a folder that is not ours (a command's output
    file), an old name without one could be another program's."""
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMPORARY.match(entry.name)
        if m is None or (target is not None and (m.group("name") != target
                                                  or m.group("pid") is None)):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            age = now - entry.stat(follow_symlinks=False).st_mtime
            pid = m.group("pid")
            stale = age >= ABANDONED_AFTER or (
                age >= STALE_AFTER and (pid is None or not _alive(int(pid))))
            if stale:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:  # gone already (another cleaner), or not ours to remove
            continue
    return removed
