"""What the train commands share: the optimizer, progress lines, recurrent-noise options,
``--resume``/``--force`` and the ``--out`` checks, and ``fit`` followed by saving the model, its
history and learning curve (data-parallel under ``mpiexec``)."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from ._common import CLIError, fraction, fractions, write_history
from ._team import current as _team

__all__ = ["make_optimizer", "progress_on", "say", "add_noise_options", "noise_options",
           "add_run_options", "apply_resume", "prepare_out", "check_resumable",
           "train_and_save", "diverged_message"]


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
    stderr with ``--json``, which keeps stdout for the JSON result. Under ``mpiexec`` only
    process 0 speaks."""
    if _team() is not None and _team().rank > 0:
        return lambda line: None
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
    try:  # access() says yes to root almost everywhere (/proc, some mounts): try a file
        fd, probe = tempfile.mkstemp(prefix=".xprnn-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise CLIError(f"--out {out}: cannot write there ({existing}: "
                       f"{e.strerror or e})") from None
    return out


def check_resumable(args, model):
    """On ``--resume``, the rebuilt model must be the saved one (same data, same vocabulary)."""
    if args.resume is None:
        return
    from ..training.state import read_meta

    saved = read_meta(args.resume)

    def same(key):
        a, b = saved.get(key), model.meta.get(key)
        if key == "tokenizer" and isinstance(a, dict) and isinstance(b, dict):
            # a run saved before the word rule was a choice used the ASCII rule
            a, b = {"rule": "ascii", **a}, {"rule": "ascii", **b}
        return a == b

    changed = [k for k in ("vocab", "classes", "tokenizer") if not same(k)]
    if changed:
        raise CLIError(f"--resume {args.resume}: the data no longer gives the run's "
                       f"{' and '.join(changed)}; was a data file changed?")


def train_and_save(model, train_b, valid_b, args, out, options, say, title, lr_scale=None):
    """``fit`` with the options every train command shares (optimizer, clipping, patience, time
    limit, the model in ``out`` after every epoch (the best one when there is validation), the
    training state beside it, ``--resume``), then save the model and its history and learning
    curve. Returns ``(history, seconds, curve)``, ``curve`` the learning curve's PNG or None
    (without matplotlib, or in processes 1..); a diverged run becomes a :class:`CLIError` (code 1),
    Ctrl-C a :class:`~xprnn.training.TrainingInterrupted` that says where everything is.

    Under ``mpiexec`` with several processes the run is data-parallel
    (:class:`~xprnn.training.parallel.DataParallel`): process 0 writes every file and prints,
    the others print nothing to stdout; an error in one process ends them all.

    ``lr_scale`` is the optimizer's per-parameter learning-rate factor
    (:attr:`xprnn.optim.Optimizer.lr_scale`), for fine-tuning."""
    from ..checkpoint import WEIGHTS_NAME
    from ..training import TrainingDiverged, TrainingInterrupted, fit
    from ..training.state import STATE_NAME, ResumeError

    team = _team()
    lead = team is None or team.rank == 0
    check_resumable(args, model)
    if lead:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CLIError(f"--out {out}: cannot create it ({e.strerror or e})") from None
        if args.force and args.resume is None:
            (out / STATE_NAME).unlink(missing_ok=True)  # a stale state must not be resumed
    else:  # the summary and --json are process 0's to print
        sys.stdout = open(os.devnull, "w", encoding="utf-8")
    deadline = None if args.max_minutes is None else time.monotonic() + 60 * args.max_minutes
    weights = out / WEIGHTS_NAME
    stamp = weights.stat().st_mtime_ns if lead and weights.exists() else None
    t0 = time.perf_counter()
    state = out / STATE_NAME
    optimizer = make_optimizer(args.optimizer, args.lr)
    optimizer.lr_scale = lr_scale
    try:
        history = (fit if team is None else team.fit)(
            model, train_b, optimizer, args.epochs,
            valid=valid_b, clip=args.clip or None, patience=args.patience, checkpoint=out,
            progress=progress_on(args), log=say, deadline=deadline, state=state,
            resume=state if args.resume is not None else None)
    except TrainingDiverged as e:
        if lead:
            write_history(out, e.history, options, f"{title} (diverged)")
        if not weights.exists():
            kept = "none"
        elif args.resume is None and weights.stat().st_mtime_ns == stamp:
            kept = "earlier"  # --force: the model of the run before this one, untouched
        else:
            kept = "this"
        raise CLIError(diverged_message(e.history, args, out, kept), code=1,
                       everywhere=True) from None
    except TrainingInterrupted as e:
        if lead:
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
    except OSError as e:  # a full disk, say, under an epoch's checkpoint or training state
        raise CLIError(save_failed(out, e), code=1) from None
    seconds = time.perf_counter() - t0
    curve = None
    if lead:
        try:
            model.save(out)
        except OSError as e:
            raise CLIError(save_failed(out, e), code=1) from None
        curve = next((p for p in write_history(out, history, options, title)
                      if p.suffix == ".png"), None)
    return history, seconds, curve


def save_failed(out, error):
    """The message for a model or state that could not be written to ``out``: every write is
    atomic, so what was there before is whole."""
    where = getattr(error, "filename", None)
    return (f"--out {out}: cannot save there ({error.strerror or error}"
            + (f": {where}" if where else "") + f"); what {out} held before this write is kept "
            "whole (every file is replaced atomically)")


def diverged_message(history, args, out, kept):
    """One line for a diverged run: what happened and where, which model is kept in ``out``
    (``kept``: "this" run's, saved before it diverged, never the exploded parameters; an
    "earlier" run's that ``--force`` did not replace; or "none"), and what to try."""
    if kept == "this" and history.best_epoch is not None:
        kept = f"the model of epoch {history.best_epoch}, the best before that, is kept in {out}"
    elif kept == "this":  # no validation: the last epoch that ended usable was saved
        kept = f"the model of the last epoch that ended before that is kept in {out}"
    elif kept == "earlier":
        kept = (f"no model of this run was saved (no epoch ended with a usable model); {out} "
                "still holds the earlier run's model")
    else:
        kept = "no model was saved (no epoch ended with a usable model)"
    clip = (f"a smaller --clip than {args.clip:g}" if args.clip else "--clip 1")
    return (f"training diverged: {history.stop_reason}; {kept}; try a smaller --lr than "
            f"{args.lr:g}, or {clip}")


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
