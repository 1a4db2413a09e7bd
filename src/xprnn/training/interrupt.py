"""Ctrl-C that waits for the step under way: the first SIGINT sets a flag the training loop
checks between steps (so the model, the optimizer and the random streams are saved in step with
each other); a second one interrupts at once, as usual."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

__all__ = ["deferred_interrupt"]


@contextmanager
def deferred_interrupt():
    """Context yielding ``interrupted() -> bool``.

    Only the main thread can own SIGINT; elsewhere (and where no Python handler is installed)
    the context changes nothing and ``interrupted()`` stays false.
    """
    flag = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):  # SIG_IGN, or a handler not installed from Python
        yield lambda: False
        return

    def first(signum, frame):
        flag.append(signum)
        signal.signal(signal.SIGINT, previous)  # the second Ctrl-C stops at once

    signal.signal(signal.SIGINT, first)
    try:
        yield lambda: bool(flag)
    finally:
        signal.signal(signal.SIGINT, previous)
