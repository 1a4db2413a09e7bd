"""``fit`` (batches, clipping, progress bar, validation, early stopping, best-model checkpoints,
a resumable training state) and ``evaluate``, for any model that follows the training protocol
of :mod:`xprnn.models.base`.

Batches are tuples of NumPy arrays; the model moves them to its backend. A classifier's batch is
``(ids, lengths, labels)``; a language model's is ``(inputs, targets)``, taken in order so the
state carries from chunk to chunk (truncated BPTT), reset at each epoch.
"""

from __future__ import annotations

import math
import time

from tqdm.auto import tqdm

from .divergence import Divergence
from .history import History, TrainingDiverged, TrainingInterrupted
from .interrupt import deferred_interrupt
from .state import load_state, save_state
from .step import train_step

__all__ = ["fit", "evaluate"]


def evaluate(model, batches, *, reduce=None):
    """Metrics over ``batches`` in evaluation mode.

    Classifier: ``{"loss", "accuracy"}``; language model: ``{"loss", "perplexity",
    "bits_per_token"}`` (per character for a character model), loss in nats per token.

    ``reduce``, a callable ``(sums, count) -> (sums, count)``, combines the metric sums before
    they become metrics: :meth:`~xprnn.training.parallel.DataParallel.reduce_sums` adds those of
    every process, each of which evaluated its own rows.
    """
    mode = model.training
    model.eval()
    sums, count, carry = {}, 0, None
    try:
        for batch in batches:
            s, k, carry = model.eval_batch(batch, carry)
            for key, v in s.items():
                sums[key] = sums.get(key, 0) + v
            count += k
    finally:
        model.train(mode)
    if reduce is not None:
        sums, count = reduce(sums, count)
    return model.metrics(sums, count)


def _score(rec, metric, mode):
    """A validation record's rank, larger is better: the model's metric, ties broken by the
    lower loss (an accuracy of 20 validation examples ties often); None if either is not
    finite (a validation loss of inf is no better than nan)."""
    main = rec[f"valid_{metric}"] if mode == "max" else -rec[f"valid_{metric}"]
    score = [main, -rec.get("valid_loss", 0.0)]
    return None if not all(math.isfinite(v) for v in score) else score


class _Alone:
    """The decisions ``fit`` takes in one process: its own clock, its own Ctrl-C, its own
    batches. :class:`~xprnn.training.parallel.DataParallel`, given as ``fit(..., team=)``, has
    the same methods (and ``reduce_step``) and takes them with the other processes."""

    def setup(self, model, deadline, interrupted):
        self.batch_tokens, self.deadline, self.stop_requested = (model.batch_tokens, deadline,
                                                                 interrupted)

    def time_up(self, fresh):
        return self.deadline is not None and time.monotonic() >= self.deadline

    @staticmethod
    def reduce_sums(sums, count):
        return sums, count

    @staticmethod
    def gather_carry(carry):
        return carry

    @staticmethod
    def scatter_carry(carry):
        return carry


class _Run:
    """The loop's bookkeeping: what a training state saves and a resume restores."""

    def __init__(self):
        self.history = History()
        self.best_score, self.best_params, self.since_best = None, None, 0
        self.epoch, self.batch = 1, 0  # the next batch to run: `batch` done in `epoch`
        self.data_epoch = None  # the train iterable's epoch counter at the start of `epoch`
        self.loss_sum, self.tokens, self.seconds = 0.0, 0, 0.0
        self.carry = None
        self.watch = Divergence()

    def trainer(self):
        return {"epoch": self.epoch, "batch": self.batch, "data_epoch": self.data_epoch,
                "loss_sum": self.loss_sum, "tokens": self.tokens, "seconds": self.seconds,
                "best_score": self.best_score, "since_best": self.since_best,
                "history": self.history.to_dict(), "divergence": self.watch.state()}

    def restore(self, loaded):
        t = loaded["trainer"]
        self.epoch, self.batch, self.data_epoch = t["epoch"], t["batch"], t["data_epoch"]
        self.loss_sum, self.tokens, self.seconds = t["loss_sum"], t["tokens"], t["seconds"]
        self.best_score, self.since_best = t["best_score"], t["since_best"]
        self.history = History.from_dict(t["history"])
        self.best_params, self.carry = loaded["best"], loaded["carry"]
        self.watch.restore(t.get("divergence"))  # absent in states saved before the rule


def fit(model, train, optimizer, epochs=1, *, valid=None, clip=None, patience=None,
        checkpoint=None, restore_best=True, progress=True, log=print, deadline=None,
        grad_hook=None, state=None, resume=None, team=None):
    """Train ``model`` for up to ``epochs`` passes over ``train``.

    Parameters
    ----------
    model : SequenceClassifier, LanguageModel, or any model with the training protocol
    train : re-iterable of batches (e.g. :func:`xprnn.text.batching.batches`)
        Each pass must give the same batches in the same order for the same epoch, as
        :class:`~xprnn.text.batching.Batches` does (its ``epoch`` counter is saved and restored),
        so that a resumed run sees exactly the batches it would have seen.
    optimizer : an optimizer from :mod:`xprnn.optim` (``step(params, grads) -> params``)
    epochs : int
        The total number of epochs, counting those done before a resume.
    valid : re-iterable of batches, optional
        Evaluated after every epoch (:func:`evaluate`); it decides the best epoch by the
        model's ``selection`` (highest accuracy for a classifier, lowest loss for a language
        model; ties go to the lower validation loss). An epoch whose validation score is not
        finite, or that ends with an exploded training loss (see Raises), is never the best.
    clip : float, optional
        Clip the global gradient norm to this value.
    patience : int, optional
        Stop after this many epochs without a better validation score.
    checkpoint : path, optional
        Directory where the best model so far is saved (atomically) after each better epoch;
        without ``valid``, after every epoch that does not end with an exploded loss.
    restore_best : bool
        Load the best epoch's parameters back at the end (needs ``valid``).
    progress : bool
        Show a tqdm progress bar with the running loss and tokens per second.
    log : callable or None
        Called with one summary line per epoch.
    deadline : float, optional
        A :func:`time.monotonic` time. Checked after every batch: once it has passed, the
        epoch ends there (it is recorded and validated as usual), training stops and
        ``history.stop_reason`` says so.
    grad_hook : callable ``(grads) -> grads``, optional
        Sees every step's gradients before clipping (:func:`xprnn.training.step.train_step`).
    state : path, optional
        File where the training state (``xprnn.training.state``) is written at the end of
        every epoch and when Ctrl-C stops the run.
    resume : path, optional
        A training state (file, or a folder holding ``training_state.safetensors``) to continue
        from: the model, the optimizer, the random streams, the position in the data, the best
        epoch and the history are restored, and the run ends exactly as if never stopped.
    team : :class:`~xprnn.training.parallel.DataParallel`, optional
        Train together with other processes: it sums every step's gradients and loss, the
        validation metrics and the token counts, agrees on Ctrl-C and the deadline, and gathers
        a language model's carried state for ``state``
        (:meth:`~xprnn.training.parallel.DataParallel.fit` sets it up).

    Returns
    -------
    History

    Raises
    ------
    TrainingDiverged
        If the loss becomes NaN or infinite, or explodes: 5 consecutive steps with a loss at
        least 100 times the first step's (and at least 100), or training ends on an epoch whose
        last step's loss or validation loss is that high (:mod:`xprnn.training.divergence`
        gives the reasons). A bump of a few steps does not stop the run, but an epoch that ends
        in one is never the best nor saved. The model keeps its last good parameters (those
        of the last step whose loss was below the limit); ``checkpoint`` keeps the best epoch,
        if any. Under data parallelism every process sees the same summed losses, so all stop
        at the same step.
    TrainingInterrupted
        On Ctrl-C: the step under way is finished, the training state written (when ``state``
        is given), and the exception says where. A second Ctrl-C stops at once.

    Notes
    -----
    On Linux, a program that trains large layers gains from calling
    :func:`xprnn.backend.keep_freed_memory` once at start, as the ``xprnn`` command does:
    glibc's malloc then keeps the per-step arrays' memory instead of faulting it in anew every
    step (an LSTM training step at (B, T, I, H) = (128, 50, 300, 512) took 0.36 s instead of
    0.42-0.49 s). It changes the whole process's allocator, so ``fit`` leaves it to the caller.
    """
    run = _Run()
    if resume is not None:
        run.restore(load_state(resume, model, optimizer))
    reduce = None if team is None else team.reduce_step
    team = _Alone() if team is None else team
    metric, mode = model.selection
    history = run.history
    good = model.state_dict()  # references, not copies: updates build new arrays

    def diverged(e, where):
        model.update(good)
        history.stop_reason = f"{e} {where}"
        return TrainingDiverged(
            f"training stopped: {history.stop_reason}; the model keeps its last good "
            "parameters" + (f" and the best checkpoint is in {checkpoint}"
                            if checkpoint and run.best_params is not None else ""),
            history)

    def save_to_state():
        carry = team.gather_carry(run.carry)  # every process takes part, one may write
        if state is not None:
            save_state(state, model, optimizer, run.trainer(), best=run.best_params,
                       carry=carry)

    with deferred_interrupt() as interrupted:
        team.setup(model, deadline, interrupted)
        run.carry = team.scatter_carry(run.carry)
        while run.epoch <= int(epochs):
            epoch = run.epoch
            if team.time_up(fresh=True):
                history.stop_reason = f"time limit reached before epoch {epoch}"
                break
            model.train()
            if run.data_epoch is None:
                run.data_epoch = getattr(train, "epoch", None)
            elif hasattr(train, "epoch"):  # resumed: replay this epoch's order, skip what's done
                train.epoch = run.data_epoch
            t0, steps = time.perf_counter() - run.seconds, run.batch
            batches = iter(train)
            for _ in range(run.batch):
                next(batches)
            total = len(train) if hasattr(train, "__len__") else None
            bar = tqdm(batches, desc=f"epoch {epoch}/{epochs}", disable=not progress,
                       leave=False, total=total, initial=run.batch)
            for batch in bar:
                before = model.state_dict()
                try:
                    result = train_step(model, batch, optimizer, carry=run.carry, clip=clip,
                                        grad_hook=grad_hook, reduce=reduce)
                    run.watch.observe(result.loss)
                except TrainingDiverged as e:
                    raise diverged(e, f"at epoch {epoch}, step {steps + 1}") from None
                if not run.watch.above:  # parameters whose loss was seen below the limit
                    good = before
                run.carry = result.carry
                steps += 1
                run.batch = steps
                run.loss_sum += result.loss
                run.tokens += team.batch_tokens(batch)
                run.seconds = time.perf_counter() - t0
                if progress:
                    bar.set_postfix(loss=f"{run.loss_sum / steps:.4f}",
                                    tok_s=f"{run.tokens / run.seconds:.0f}")
                if team.stop_requested():
                    bar.close()
                    save_to_state()
                    where = f"; the training state is in {state}" if state is not None else ""
                    raise TrainingInterrupted(
                        f"interrupted after {steps} batches of epoch {epoch}{where}", history,
                        state, epoch, steps)
                if team.time_up(fresh=False):
                    history.stop_reason = (f"time limit reached in epoch {epoch} after {steps} "
                                           "steps")
                    break
            bar.close()
            seconds = time.perf_counter() - t0
            rec = {"epoch": epoch, "train_loss": run.loss_sum / max(steps, 1),
                   "seconds": seconds,
                   "tokens_per_s": run.tokens / seconds if seconds > 0 else float("nan")}
            run.epoch, run.batch, run.loss_sum, run.tokens, run.seconds = epoch + 1, 0, 0.0, 0, 0.0
            run.data_epoch = getattr(train, "epoch", None)  # where the next epoch's order starts
            run.carry = None  # a language model's state starts afresh every epoch
            if valid is not None:
                metrics = evaluate(model, valid, reduce=team.reduce_sums)
                rec.update({f"valid_{k}": v for k, v in metrics.items()})
            # an epoch ending with an exploded loss is neither the best nor saved
            usable = run.watch.end_epoch(rec.get("valid_loss"))
            if usable:
                good = model.state_dict()
            if valid is not None:
                score = _score(rec, metric, mode)
                if usable and score is not None and (run.best_score is None
                                                      or score > run.best_score):
                    run.best_score, run.best_params, run.since_best = score, good, 0
                    history.best_epoch = epoch
                    if checkpoint is not None:
                        model.save(checkpoint)
                else:
                    run.since_best += 1
            elif checkpoint is not None and usable:  # without validation: the latest one
                model.save(checkpoint)
            history.epochs.append(rec)
            out_of_patience = patience is not None and valid is not None and (
                run.since_best >= patience)
            if history.stop_reason is None and out_of_patience:
                history.stop_reason = f"no better validation score for {patience} epochs"
            save_to_state()
            if log is not None:
                log("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                              for k, v in rec.items()))
            if history.stop_reason is not None:  # the deadline passed, or patience ran out
                break
        try:
            run.watch.check_end()
        except TrainingDiverged as e:
            raise diverged(e, f"at the end of epoch {run.epoch - 1}") from None
    if restore_best and run.best_params is not None:
        model.update(run.best_params)
    return history
