"""The ``xprnn`` command line.

::

    xprnn sentiment train [--data PATH] [--test PATH] [options] [--out DIR]
    xprnn sentiment eval --model DIR --data PATH
    xprnn sentiment predict --model DIR "text" ["text" ...]
    xprnn sentiment predict --model DIR -i FILE|- [-o FILE] [--json]
    xprnn lm train --text FILE --level char|word [options] [--out DIR]
    xprnn lm generate --model DIR [--prompt TEXT] [--length N] [--temperature T]

Every command takes ``--backend numpy|cupy|torch|array_api_strict``, ``--device`` and
``--dtype``. :func:`main` returns the exit status: 0 on success, 2 for a user error (bad option,
missing or malformed file, unknown label, ...), printed as ``xprnn: error: ...`` without a
traceback, 1 when training diverges, 130 when interrupted.

NumPy's floating-point warnings ("overflow encountered in matmul", ...) do not reach the console:
a diverging run, where they are expected, says what happened in its error; any other command
that meets them ends with one note that counts them. The library itself leaves NumPy's settings
alone.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

import numpy as np

from ..backend import keep_freed_memory
from . import _lm, _sentiment, _team
from ._common import CLIError, HelpFormatter
from ._team import end_job

__all__ = ["main", "build_parser"]


class _UsageError(Exception):
    """argparse's complaint, raised instead of exiting so :func:`main` can return 2."""


class _Parser(argparse.ArgumentParser):
    # sub-parsers are built with type(parent), so they share the formatter and error()
    def __init__(self, *args, **kw):
        kw.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kw)

    def error(self, message):
        self.print_usage(sys.stderr)
        raise _UsageError(message)


def build_parser():
    """The ``xprnn`` argument parser (subcommands set ``run``, a function of the args)."""
    from .._version import __version__

    parser = _Parser(prog="xprnn", description="Recurrent networks (RNN, LSTM, GRU) with "
                     "hand-written BPTT on NumPy, CuPy, PyTorch or array-api-strict arrays.")
    parser.add_argument("--version", action="version", version=f"xprnn {__version__}")
    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    _sentiment.add_parser(sub)
    _lm.add_parser(sub)
    return parser


def main(argv=None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        print(f"xprnn: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help and --version exit through argparse
        return e.code if isinstance(e.code, int) else 0
    # the command owns its process: let malloc keep the per-step arrays' memory between steps
    # (xprnn.backend.memory; 20% of a large LSTM training step went to page faults without it)
    keep_freed_memory()
    trouble = Counter()  # NumPy's floating-point errors in this command, by kind
    try:
        with np.errstate(over="call", invalid="call", divide="call",
                         call=lambda kind, flag: trouble.update([kind])):
            code = args.run(args)
        if trouble and not _team.follower():
            kinds = ", ".join(f"{kind} ({n} times)" for kind, n in sorted(trouble.items()))
            print(f"xprnn: note: NumPy met floating-point {kinds} in this run: values left the "
                  "data type's range, so results may be unreliable", file=sys.stderr)
        return code
    except CLIError as e:
        print(f"xprnn: error: {e}", file=sys.stderr)
        end_job(e)  # under mpiexec: the other processes must not wait for this one
        return e.code
    except KeyboardInterrupt as e:  # a train command says what it saved and how to resume
        print(f"xprnn: interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        return 130
