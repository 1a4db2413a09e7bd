"""Pieces every ``xprnn`` command shares: user errors, option types, the backend options,
loading a checkpoint, and writing a run's history, curve and summary."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
from pathlib import Path

__all__ = [
    "CLIError",
    "HelpFormatter",
    "add_backend_options",
    "add_progress_options",
    "backend_from_args",
    "load_model",
    "write_history",
    "dump_json",
    "throughput",
    "best_record",
    "make_optimizer",
    "progress_on",
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
    (2, or 1 for a run that failed on good input, such as diverging training)."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


class HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to an option's help unless the default is None/False or the help
    already names it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default is None or action.default is False  # (0 == False, so no `in`)
                or action.default == argparse.SUPPRESS or "default" in text
                or not action.option_strings):
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


def add_noise_options(group):
    """``--recurrent-dropout`` and ``--zoneout`` of the train commands."""
    group.add_argument("--recurrent-dropout", type=fraction, default=0.0, metavar="P",
                       help="variational dropout on the recurrent state (one mask per sequence)")
    group.add_argument("--zoneout", type=fractions, default=0.0, metavar="P[,PC]",
                       help="zoneout rate of the states (LSTM: PH,PC for h and c)")


def noise_options(args):
    """The models' keyword arguments for ``--recurrent-dropout`` and ``--zoneout``."""
    zoneout = args.zoneout
    return {"recurrent_dropout": args.recurrent_dropout,
            "zoneout": tuple(zoneout) if isinstance(zoneout, (list, tuple)) else zoneout}


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


def load_model(args, task):
    """The checkpoint in ``--model`` on the chosen backend, checked to be a ``task`` model."""
    from ..checkpoint import load

    module, device = backend_from_args(args)
    path = Path(args.model)
    if not path.exists():
        raise CLIError(f"--model {path}: no such directory")
    try:
        model = load(path, xp=module, device=device, dtype=args.dtype)
    except (ValueError, TypeError) as e:
        raise CLIError(f"--model {path}: {e}") from None
    found = model.meta.get("task")
    if found != task:
        what = f"a {found!r} model" if found else "not saved by the xprnn command line"
        raise CLIError(f"--model {path}: expected a {task!r} model, but it is {what}")
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


def write_history(out, history, options, title):
    """``out/history.json`` and ``out/learning_curve.png`` (skipped, with a note, without
    matplotlib); returns the paths written."""
    out = Path(out)
    path = out / "history.json"
    path.write_text(json.dumps(_plain({**history.to_dict(), "options": options}), indent=2,
                               allow_nan=False) + "\n", encoding="utf-8")
    written = [path]
    if history.epochs:
        try:
            written.append(history.plot(out / "learning_curve.png", title=title))
        except ImportError:
            print("xprnn: note: matplotlib is not installed, so no learning_curve.png "
                  "(pip install matplotlib)", file=sys.stderr)
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


def make_optimizer(name, lr):
    from .. import optim

    classes = {"adam": optim.Adam, "adamw": optim.AdamW, "sgd": optim.SGD,
               "adagrad": optim.Adagrad}
    try:
        return classes[name](lr=lr)
    except ValueError as e:
        raise CLIError(f"--lr {lr}: {e}") from None


def progress_on(args):
    return sys.stderr.isatty() if args.progress is None else args.progress


def say(args):
    """Print one progress line at once (flushed, so a log file shows each epoch as it ends); to
    stderr with ``--json``, which keeps stdout for the JSON result."""
    stream = sys.stderr if args.json else sys.stdout
    return lambda line: print(line, file=stream, flush=True)


def add_run_options(parser):
    """``--resume`` and ``--force`` of the train commands."""
    parser.add_argument("--resume", metavar="DIR",
                        help="continue the run saved in DIR (stopped with Ctrl-C, killed, or "
                             "finished) exactly where it stopped, with its options; --epochs "
                             "may raise the total")
    parser.add_argument("--force", action="store_true",
                        help="start afresh in an --out folder that already holds a model")


# what a resumed run may change; every other option is the saved run's
_RESUME_KEEPS = ("epochs", "max_minutes", "progress", "json", "resume", "force", "backend",
                 "device")


def apply_resume(args, **defaults):
    """With ``--resume DIR``, the options of the run saved in DIR (``--out`` becomes DIR), but
    for those a resumed run may change; options left unset take ``defaults`` (e.g. the number
    of epochs, which defaults to the saved run's total when resuming)."""
    saved = {}
    if args.resume is not None:
        from ..training.state import read_meta

        try:
            saved = read_meta(args.resume).get("options")
        except ValueError as e:  # ResumeError
            raise CLIError(f"--resume {args.resume}: {e}") from None
        if not isinstance(saved, dict):
            raise CLIError(f"--resume {args.resume}: the training state was not written by "
                           "this command")
        for k, v in saved.items():
            if hasattr(args, k) and (k not in _RESUME_KEEPS or getattr(args, k) is None):
                setattr(args, k, v)
        args.out = args.resume
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def prepare_out(args):
    """Check ``--out`` before any work: a directory we can write (or create), and no model of
    another run in it unless ``--resume`` or ``--force``. Creates nothing; returns the path."""
    from ..checkpoint import WEIGHTS_NAME
    from ..training.state import STATE_NAME

    out = Path(args.out)
    if out.is_file():
        raise CLIError(f"--out {out}: is a file, expected a directory")
    held = [n for n in (WEIGHTS_NAME, STATE_NAME) if (out / n).exists()]
    if held and args.resume is None and not args.force:
        raise CLIError(f"--out {out} already holds a model ({', '.join(held)}): continue it "
                       f"with --resume {out}, or start afresh with --force")
    # the folder, or the nearest existing one above it, must let us write
    existing = out.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"--out {out}: cannot write there ({existing} is not a writable "
                       "directory)")
    return out


def check_resumable(args, model):
    """On ``--resume``, the rebuilt model must be the saved one (same data, same vocabulary)."""
    if args.resume is None:
        return
    from ..training.state import read_meta

    saved = read_meta(args.resume)
    changed = [k for k in ("vocab", "classes", "tokenizer") if saved.get(k) != model.meta.get(k)]
    if changed:
        raise CLIError(f"--resume {args.resume}: the data no longer gives the run's "
                       f"{' and '.join(changed)}; was a data file changed?")


def train_and_save(model, train_b, valid_b, args, out, options, say, title):
    """``fit`` with the options every train command shares (optimizer, clipping, patience, time
    limit, the model in ``out`` after every epoch (the best one when there is validation), the
    training state beside it, ``--resume``), then save the model and its history and learning
    curve. Returns ``(history, seconds)``; a diverged run becomes a :class:`CLIError` (code 1),
    Ctrl-C a :class:`~xprnn.training.TrainingInterrupted` that says where everything is."""
    from ..training import TrainingDiverged, TrainingInterrupted, fit
    from ..training.state import STATE_NAME, ResumeError

    check_resumable(args, model)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"--out {out}: cannot create it ({e.strerror or e})") from None
    if args.force and args.resume is None:
        (out / STATE_NAME).unlink(missing_ok=True)  # a stale state must not be resumed later
    deadline = None if args.max_minutes is None else time.monotonic() + 60 * args.max_minutes
    t0 = time.perf_counter()
    state = out / STATE_NAME
    try:
        history = fit(model, train_b, make_optimizer(args.optimizer, args.lr), args.epochs,
                      valid=valid_b, clip=args.clip or None, patience=args.patience,
                      checkpoint=out, progress=progress_on(args), log=say, deadline=deadline,
                      state=state, resume=state if args.resume is not None else None)
    except TrainingDiverged as e:
        write_history(out, e.history, options, f"{title} (diverged)")
        raise CLIError(f"{e}; try a smaller --lr or a --clip", code=1) from None
    except TrainingInterrupted as e:
        write_history(out, e.history, options, f"{title} (interrupted)")
        done = len(e.history.epochs)
        kept = (f"; the model of epoch {e.history.best_epoch or done} is in {out}" if done
                else "")
        raise TrainingInterrupted(
            f"stopped in epoch {e.epoch} after {e.batch} batches; the training state is saved "
            f"in {state}{kept}; continue with: xprnn {model.meta['task']} train "
            f"--resume {out}", e.history, e.saved, e.epoch, e.batch) from None
    except ResumeError as e:  # a training state that does not fit (checked before any change)
        raise CLIError(f"--resume {args.resume}: {e}") from None
    seconds = time.perf_counter() - t0
    model.save(out)
    write_history(out, history, options, title)
    return history, seconds
