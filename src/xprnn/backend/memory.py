"""Keeping freed memory for the next time step: glibc's ``malloc`` and a step's temporaries.

A training step allocates and frees the same arrays every time step: at (B, T, I, H) =
(128, 50, 300, 512) an LSTM step makes a dozen 1 MiB ``(B, 4H)`` blocks and frees them again.
glibc's ``malloc`` (Linux) serves them from its heap once it has seen one freed, but it hands the
top of the heap back to the operating system whenever more than ``M_TRIM_THRESHOLD`` lies free
there, a threshold it keeps at about twice the largest block it has seen (2 MiB here). So the
heap shrinks and grows all the time, and every page that comes back is a page fault the kernel
answers with a zeroed page: 38,000 minor faults per training step there, and 0.49 s instead of
0.38 s (measured on a 2-core Xeon: ``docs/benchmarks.md``, "Page faults").

:func:`keep_freed_memory` asks ``malloc`` to serve blocks up to 32 MiB from its heap and to keep
up to 512 MiB of free heap for reuse. Larger arrays keep their own mappings, which NumPy backs
with huge pages where the kernel allows, so they cost few faults. The settings are
process-wide, so the library never applies them on its own: the ``xprnn`` command does (it owns
its process), and a program that trains with the Python API may call the function once at
start. The price is that a process's resident memory stays near its peak instead of shrinking
between steps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

MMAP_THRESHOLD = 32 * 2**20  # glibc's own ceiling for its adaptive threshold
TRIM_THRESHOLD = 512 * 2**20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
# a person who tuned malloc through the environment keeps their settings
_USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_memory(mmap_threshold=MMAP_THRESHOLD, trim_threshold=TRIM_THRESHOLD):
    """Tell glibc's ``malloc`` to keep freed memory for reuse (see the module docstring).

    Parameters
    ----------
    mmap_threshold : int
        Bytes: blocks at least this large get a mapping of their own, smaller ones come from
        the heap.
    trim_threshold : int
        Bytes of free memory at the top of the heap kept before any goes back to the system.

    Returns
    -------
    bool
        True when both settings took effect; False where ``malloc`` is not glibc's (macOS,
        Windows, musl), where the environment already tunes it (``MALLOC_*_`` variables or
        ``glibc.malloc`` tunables in ``GLIBC_TUNABLES``), or where glibc refused a value.
    """
    for name, value in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int (bytes), got {value!r}")
    if platform.libc_ver()[0] != "glibc":
        return False
    if any(k in os.environ for k in _USER_SETTINGS) or "glibc.malloc" in os.environ.get(
            "GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # Both or neither: either setting alone stops glibc adapting the other, and a trim
    # threshold without a raised mmap threshold maps every block over 128 KiB anew. The mmap
    # threshold goes first because it is the one glibc may refuse (over 32 MiB, in older
    # versions), and a refusal changes nothing.
    return (mallopt(_M_MMAP_THRESHOLD, min(mmap_threshold, 2**31 - 1)) == 1
            and mallopt(_M_TRIM_THRESHOLD, min(trim_threshold, 2**31 - 1)) == 1)
