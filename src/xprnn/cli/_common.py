"""Pieces every ``xprnn`` command shares: user errors, option types, the backend options,
loading a checkpoint, and writing a run's history, curve and summary."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from pathlib import Path

__all__ = [
    "CLIError",
    "HelpFormatter",
    "add_backend_options",
    "add_progress_options",
    "backend_from_args",
    "load_model",
    "write_history",
    "PLOT_HINT",
    "dump_json",
    "throughput",
    "best_record",
    "fractions",
    "positive_int",
    "nonneg_int",
    "positive_float",
    "nonneg_float",
    "fraction",
]

BACKENDS = ("numpy", "cupy", "torch", "array_api_strict")
_INSTALL = {"cupy": "pip install cupy-cuda12x (needs CUDA)", "torch": "pip install torch",
            "array_api_strict": "pip install array-api-strict"}


class CLIError(Exception):
    """A problem with the user's input: printed as ``xprnn: error: ...``, exit status ``code``
    (2, or 1 for a run that failed on good input, such as diverging training). ``everywhere``:
    under ``mpiexec``, every process raised it at the same step (a diverged run), so none waits
    for the others and the job need not be aborted (:func:`end_job`)."""

    def __init__(self, message, code=2, everywhere=False):
        super().__init__(message)
        self.code, self.everywhere = code, everywhere


class HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to an option's help unless the default is None/False, the option
    is a ``--no-...`` switch, or the help already names it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default is None or action.default is False  # (0 == False, so no `in`)
                or action.default == argparse.SUPPRESS or "default" in text
                or not action.option_strings or (action.nargs == 0 and action.default is True)):
            return text
        return f"{text} (default: %(default)s)".lstrip()


# -- option types (argparse turns their ArgumentTypeError into "argument --x: ...") --------------


def _number(kind, text, ok, what):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text):
    return _number(int, text, lambda v: v >= 1, "an integer >= 1")


def nonneg_int(text):
    return _number(int, text, lambda v: v >= 0, "an integer >= 0")


def positive_float(text):
    return _number(float, text, lambda v: math.isfinite(v) and v > 0, "a number > 0")


def nonneg_float(text):
    return _number(float, text, lambda v: math.isfinite(v) and v >= 0, "a number >= 0")


def fraction(text):
    return _number(float, text, lambda v: 0 <= v < 1, "a fraction in [0, 1)")


def fractions(text):
    """One fraction, or several separated by commas (e.g. zoneout rates of h and c)."""
    parts = [fraction(t) for t in text.split(",")]
    return parts[0] if len(parts) == 1 else tuple(parts)


# -- backend -------------------------------------------------------------------------------------


def add_backend_options(parser, dtype_default=None):
    g = parser.add_argument_group("backend")
    g.add_argument("--backend", choices=BACKENDS, default="numpy",
                   help="array library the model runs on (default: numpy)")
    g.add_argument("--device", default=None, metavar="DEV",
                   help="device of that backend, e.g. cuda or cuda:1 (torch), 0 (cupy); "
                        "default: the backend's default device")
    saved = " (default: the saved model's)" if dtype_default is None else \
        f" (default: {dtype_default})"
    g.add_argument("--dtype", choices=("float32", "float64"), default=dtype_default,
                   help="parameter dtype" + saved)


def add_progress_options(parser):
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar (default: only when stderr is a terminal)")


def _import_backend(name):
    # CuPy through its array-api-compat namespace: plain cupy.asarray has no device= keyword
    module = "array_api_compat.cupy" if name == "cupy" else name
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise CLIError(f"--backend {name}: {name} cannot be imported ({e}); install it with "
                       f"{_INSTALL.get(name, 'pip')}") from None


def _device(module, name, device):
    """The backend's device object for the ``--device`` text."""
    if device is None:
        return None
    if name == "torch":
        try:
            return module.device(device)
        except (RuntimeError, ValueError) as e:
            raise CLIError(f"--device {device!r}: not a torch device ({e})") from None
    if name == "cupy":
        digits = device.rsplit(":", 1)[-1]
        if not digits.isdigit():
            raise CLIError(f"--device {device!r}: cupy devices are numbers, e.g. 0 or cuda:1")
        import cupy

        return cupy.cuda.Device(int(digits))
    info = module.__array_namespace_info__() if hasattr(module, "__array_namespace_info__") \
        else None
    if info is None:  # numpy < 2 has no inspection API; its only device is the CPU
        if device != "cpu":
            raise CLIError(f"--device {device!r}: numpy arrays live on 'cpu' only")
        return device
    devices = list(info.devices())
    for d in devices:
        # numpy names its device "cpu"; array-api-strict's Device('CPU_DEVICE') is matched by
        # the name inside the quotes as well as by its full text
        if device in (d, str(d), getattr(d, "_device", None)):
            return d
    names = [getattr(d, "_device", str(d)) for d in devices]
    raise CLIError(f"--device {device!r}: {name} has the devices {names}")


def backend_from_args(args):
    """``(module, device)`` for ``--backend``/``--device``, checked by building one array."""
    from ..backend import resolve

    module = _import_backend(args.backend)
    device = _device(module, args.backend, args.device)
    try:
        resolve(module, device)
    except Exception as e:  # e.g. torch without CUDA, cupy without a GPU
        where = f" --device {args.device}" if args.device is not None else ""
        raise CLIError(f"--backend {args.backend}{where}: cannot create an array there "
                       f"({type(e).__name__}: {e})") from None
    return module, device


def load_model(args, task, option="--model"):
    """The checkpoint in ``option`` (``--model``) on the chosen backend, checked to be a
    ``task`` model."""
    from ..checkpoint import load

    module, device = backend_from_args(args)
    path = Path(getattr(args, option.lstrip("-").replace("-", "_")))
    if not path.exists():
        raise CLIError(f"{option} {path}: no such directory")
    try:
        model = load(path, xp=module, device=device, dtype=args.dtype)
    except (ValueError, TypeError) as e:
        raise CLIError(f"{option} {path}: {e}") from None
    found = model.meta.get("task")
    if found != task:
        what = f"a {found!r} model" if found else "not saved by the xprnn command line"
        raise CLIError(f"{option} {path}: expected a {task!r} model, but it is {what}")
    return model


# -- output --------------------------------------------------------------------------------------


def _plain(value):
    """JSON-able copy with non-finite floats as None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def dump_json(obj, file=None):
    print(json.dumps(_plain(obj), allow_nan=False), file=file or sys.stdout)


PLOT_HINT = 'pip install "xprnn[plot]"'  # what installs matplotlib for the learning curve


def write_history(out, history, options, title):
    """``out/history.json`` and ``out/learning_curve.png`` (skipped, with a one-line note that
    says how to get it, without matplotlib); returns the paths written."""
    out = Path(out)
    path = out / "history.json"
    path.write_text(json.dumps(_plain({**history.to_dict(), "options": options}), indent=2,
                               allow_nan=False) + "\n", encoding="utf-8")
    written = [path]
    if history.epochs:
        try:
            written.append(history.plot(out / "learning_curve.png", title=title))
        except ImportError:
            print(f"xprnn: note: no learning curve picture: matplotlib is not installed; to get "
                  f"{out / 'learning_curve.png'} next time: {PLOT_HINT}", file=sys.stderr)
    return written


def throughput(history):
    """``(epochs run, seconds, tokens per second)`` over the whole run."""
    seconds = sum(e["seconds"] for e in history.epochs)
    tokens = sum(e["tokens_per_s"] * e["seconds"] for e in history.epochs
                 if math.isfinite(e["tokens_per_s"]))
    return len(history.epochs), seconds, (tokens / seconds if seconds > 0 else float("nan"))


def best_record(history):
    """The record of the best epoch (the last one when there was no validation)."""
    if not history.epochs:
        return {}
    if history.best_epoch is not None:
        return history.epochs[history.best_epoch - 1]
    return history.epochs[-1]
