"""Writing a command's output file whole or not at all: to a temporary file in the same folder,
renamed over the target once everything is written, and removed on an error, Ctrl-C or SIGTERM,
so that an older file of that name stays as it was and nothing half-written is left behind. A
temporary file that a killed run (SIGKILL, power loss) left is removed by the next run writing
the same file, by the rule of the checkpoints' temporaries
(:func:`xprnn.checkpoint._io.remove_stale_temporaries`)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from ..checkpoint._io import remove_stale_temporaries, temporary_name
from ._common import CLIError

__all__ = ["output", "sigterm_as_interrupt"]


@contextlib.contextmanager
def output(path):
    """A text file to write the results to: standard output, or a temporary file beside
    ``path`` renamed to ``path`` once all is written (removed on any error, Ctrl-C or
    SIGTERM), so ``path`` is whole or untouched. The folder is checked at once. A path that is
    not a regular file (``/dev/null``, ``/dev/stdout``, a named pipe) is written as it is: a
    rename would replace it; a symbolic link's target is replaced, not the link."""
    if path is None:
        yield sys.stdout
        return
    p = Path(path)
    if p.is_dir():
        raise CLIError(f"--output {p}: is a folder; give a file name")
    if p.exists() and not p.is_file():
        try:
            f = open(p, "w", encoding="utf-8", newline="\n")  # noqa: SIM115 (closed below)
        except OSError as e:
            raise CLIError(f"--output {p}: cannot be written ({e.strerror or e})") from None
        try:
            yield f
        except BaseException:
            with contextlib.suppress(OSError):
                f.close()
            raise
        try:
            f.close()  # writes what is buffered
        except OSError as e:
            raise CLIError(f"--output {p}: cannot be written ({e.strerror or e})") from None
        return
    p = p.resolve() if p.is_symlink() else p
    folder = p.parent
    if not folder.is_dir():
        raise CLIError(f"--output {p}: the folder {folder} does not exist")
    # named as a checkpoint's temporaries are, so a killed run's file goes at the next run
    remove_stale_temporaries(folder, target=p.name)
    tmp = temporary_name(p)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise CLIError(f"--output {p}: cannot write in the folder {folder} "
                       f"({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            yield f
            try:
                f.flush()
                os.fsync(f.fileno())
                os.chmod(tmp, _mode(p))
                os.replace(tmp, p)
            except OSError as e:  # a full disk, say
                raise CLIError(f"--output {p}: cannot be written ({e.strerror or e})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _mode(p):
    """The permissions of the replaced file, or those of a new file (mkstemp's are 0600)."""
    try:
        return p.stat().st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (``kill``, a batch system's time limit) raises like Ctrl-C, so the temporary
    output is removed instead of left behind."""
    def handler(signum, frame):
        raise KeyboardInterrupt("terminated (SIGTERM)")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
