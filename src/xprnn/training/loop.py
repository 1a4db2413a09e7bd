"""``fit`` (batches, clipping, progress bar, validation, early stopping, best-model checkpoints)
and ``evaluate``, for any model that follows the training protocol of :mod:`xprnn.models.base`.

Batches are tuples of NumPy arrays; the model moves them to its backend. A classifier's batch is
``(ids, lengths, labels)``; a language model's is ``(inputs, targets)``, taken in order so the
state carries from chunk to chunk (truncated BPTT), reset at each epoch.
"""

from __future__ import annotations

import time

from tqdm.auto import tqdm

from .history import History, TrainingDiverged
from .step import train_step

__all__ = ["fit", "evaluate"]


def evaluate(model, batches):
    """Metrics over ``batches`` in evaluation mode.

    Classifier: ``{"loss", "accuracy"}``; language model: ``{"loss", "perplexity",
    "bits_per_token"}`` (per character for a character model), loss in nats per token.
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
    return model.metrics(sums, count)


def _better(score, best, mode):
    return best is None or (score > best if mode == "max" else score < best)


def fit(model, train, optimizer, epochs=1, *, valid=None, clip=None, patience=None,
        checkpoint=None, restore_best=True, progress=True, log=print, deadline=None,
        grad_hook=None):
    """Train ``model`` for up to ``epochs`` passes over ``train``.

    Parameters
    ----------
    model : SequenceClassifier, LanguageModel, or any model with the training protocol
    train : re-iterable of batches (e.g. :func:`xprnn.text.batching.batches`)
    optimizer : an optimizer from :mod:`xprnn.optim` (``step(params, grads) -> params``)
    epochs : int
    valid : re-iterable of batches, optional
        Evaluated after every epoch (:func:`evaluate`); it decides the best epoch by the
        model's ``selection`` (highest accuracy for a classifier, lowest loss for a language
        model).
    clip : float, optional
        Clip the global gradient norm to this value.
    patience : int, optional
        Stop after this many epochs without a better validation score.
    checkpoint : path, optional
        Directory where the best model so far is saved (atomically) after each better epoch.
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

    Returns
    -------
    History

    Raises
    ------
    TrainingDiverged
        If the loss becomes NaN or infinite; the model keeps its last good parameters.
    """
    metric, mode = model.selection
    history = History()
    best_score, best_params, since_best = None, None, 0
    good = model.state_dict()  # references, not copies: updates build new arrays
    for epoch in range(1, int(epochs) + 1):
        if deadline is not None and time.monotonic() >= deadline:
            history.stop_reason = f"time limit reached before epoch {epoch}"
            break
        model.train()
        t0, tokens, loss_sum, steps, carry = time.perf_counter(), 0, 0.0, 0, None
        bar = tqdm(train, desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False,
                   total=len(train) if hasattr(train, "__len__") else None)
        for batch in bar:
            before = model.state_dict()
            try:
                result = train_step(model, batch, optimizer, carry=carry, clip=clip,
                                    grad_hook=grad_hook)
            except TrainingDiverged as e:
                model.update(good)
                history.stop_reason = f"{e} at epoch {epoch}, step {steps + 1}"
                raise TrainingDiverged(
                    f"training stopped: {history.stop_reason}; the model keeps its last good "
                    "parameters" + (f" and the best checkpoint is in {checkpoint}" if checkpoint
                                    and best_params is not None else ""),
                    history,
                ) from None
            good, carry = before, result.carry
            steps += 1
            loss_sum += result.loss
            tokens += model.batch_tokens(batch)
            if progress:
                bar.set_postfix(loss=f"{loss_sum / steps:.4f}",
                                tok_s=f"{tokens / (time.perf_counter() - t0):.0f}")
            if deadline is not None and time.monotonic() >= deadline:
                history.stop_reason = f"time limit reached in epoch {epoch} after {steps} steps"
                break
        bar.close()
        good = model.state_dict()
        seconds = time.perf_counter() - t0
        rec = {"epoch": epoch, "train_loss": loss_sum / max(steps, 1), "seconds": seconds,
               "tokens_per_s": tokens / seconds if seconds > 0 else float("nan")}
        if valid is not None:
            rec.update({f"valid_{k}": v for k, v in evaluate(model, valid).items()})
            score = rec[f"valid_{metric}"]
            if _better(score, best_score, mode):
                best_score, best_params, since_best = score, good, 0
                history.best_epoch = epoch
                if checkpoint is not None:
                    model.save(checkpoint)
            else:
                since_best += 1
        history.epochs.append(rec)
        if log is not None:
            log("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in rec.items()))
        if history.stop_reason is not None:  # the deadline passed during this epoch
            break
        if patience is not None and valid is not None and since_best >= patience:
            history.stop_reason = f"no better validation score for {patience} epochs"
            break
    if restore_best and best_params is not None:
        model.update(best_params)
    return history
