"""Training: ``fit`` (batches, clipping, progress bar, validation, early stopping, best-model
checkpoints) and ``evaluate``; ``History`` keeps the curves and can plot them.

Batches are tuples of NumPy arrays; the model moves them to its backend. A classifier's batch is
``(ids, lengths, labels)``; a language model's is ``(inputs, targets)``, taken in order so the
state carries from chunk to chunk (truncated BPTT), reset at each epoch.
"""

from __future__ import annotations

import math
import time

from tqdm.auto import tqdm

from .clip import clip_grad_norm
from .losses import softmax_cross_entropy
from .models import LanguageModel, _ids

__all__ = ["fit", "evaluate", "History", "TrainingDiverged"]


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the model holds its last good parameters."""

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


class History:
    """Per-epoch records: ``history.epochs`` is a list of dicts (``epoch``, ``train_loss``,
    ``valid_*`` metrics, ``seconds``, ``tokens_per_s``)."""

    def __init__(self):
        self.epochs = []
        self.best_epoch = None
        self.stop_reason = None

    def __getitem__(self, key):
        return [e.get(key) for e in self.epochs]

    def to_dict(self):
        return {"epochs": self.epochs, "best_epoch": self.best_epoch,
                "stop_reason": self.stop_reason}

    def plot(self, path, title=None):
        """Write the learning curves (loss, and the validation metric) to a PNG at ``path``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = [k for k in self.epochs[0] if k.startswith("valid_")] if self.epochs else []
        fig, axes = plt.subplots(1, 1 + bool(keys), figsize=(5 + 4 * bool(keys), 3.5))
        axes = list(axes) if keys else [axes]
        ep = self["epoch"]
        axes[0].plot(ep, self["train_loss"], "o-", label="train loss")
        if "valid_loss" in keys:
            axes[0].plot(ep, self["valid_loss"], "o-", label="valid loss")
        axes[0].set_xlabel("epoch")
        axes[0].legend()
        for k in keys:
            if k != "valid_loss":
                axes[1].plot(ep, self[k], "o-", label=k)
        if keys:
            axes[1].set_xlabel("epoch")
            axes[1].legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def _tokens(batch, is_lm):
    if is_lm:
        return int(batch[0].size)
    return int(sum(batch[1]))


def evaluate(model, batches):
    """Metrics over ``batches`` in evaluation mode.

    Classifier: ``{"loss", "accuracy"}``; language model: ``{"loss", "perplexity",
    "bits_per_token"}`` (per character for a character model), loss in nats per token.
    """
    is_lm = isinstance(model, LanguageModel)
    mode = model.training
    model.eval()
    total, n, correct, state = 0.0, 0, 0, None
    try:
        for batch in batches:
            if is_lm:
                logits, state, _ = model.forward(batch[0], state, keep=False)
                loss, _ = softmax_cross_entropy(logits, _ids(batch[1], model, "targets"))
                k = int(batch[1].size)
            else:
                ids, lengths, labels = batch
                logits, _ = model.forward(ids, lengths, keep=False)
                labels = _ids(labels, model, "labels")
                loss, _ = softmax_cross_entropy(logits, labels)
                hit = model.xp.argmax(logits, axis=-1) == labels
                correct += int(model.xp.sum(model.xp.astype(hit, model.xp.int64)))
                k = int(labels.shape[0])  # (array-api-strict arrays have no len())
            total += float(loss) * k
            n += k
    finally:
        model.train(mode)
    out = {"loss": total / max(n, 1)}
    if is_lm:
        out["perplexity"] = math.exp(min(out["loss"], 700.0))
        out["bits_per_token"] = out["loss"] / math.log(2)
    else:
        out["accuracy"] = correct / max(n, 1)
    return out


def fit(model, train, optimizer, epochs=1, *, valid=None, clip=None, patience=None,
        checkpoint=None, restore_best=True, progress=True, log=print, deadline=None):
    """Train ``model`` for up to ``epochs`` passes over ``train``.

    Parameters
    ----------
    model : SequenceClassifier or LanguageModel
    train : re-iterable of batches (e.g. :func:`xprnn.batching.batches`)
    optimizer : an optimizer from :mod:`xprnn.optim` (``step(params, grads) -> params``)
    epochs : int
    valid : re-iterable of batches, optional
        Evaluated after every epoch (:func:`evaluate`); it decides the best epoch
        (highest accuracy for a classifier, lowest loss for a language model).
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

    Returns
    -------
    History

    Raises
    ------
    TrainingDiverged
        If the loss becomes NaN or infinite; the model keeps its last good parameters.
    """
    is_lm = isinstance(model, LanguageModel)
    history = History()
    best_score, best_params, since_best = None, None, 0
    good = model.state_dict()
    for epoch in range(1, int(epochs) + 1):
        if deadline is not None and time.monotonic() >= deadline:
            history.stop_reason = f"time limit reached before epoch {epoch}"
            break
        model.train()
        t0, tokens, loss_sum, steps, state = time.perf_counter(), 0, 0.0, 0, None
        bar = tqdm(train, desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False,
                   total=len(train) if hasattr(train, "__len__") else None)
        for batch in bar:
            if is_lm:
                loss, grads, state = model.loss(batch[0], batch[1], state)
            else:
                loss, grads, _ = model.loss(*batch)
            loss = float(loss)
            if not math.isfinite(loss):
                model._assign(good)
                history.stop_reason = f"non-finite loss ({loss}) at epoch {epoch}, step {steps + 1}"
                raise TrainingDiverged(
                    f"training stopped: {history.stop_reason}; the model keeps its last good "
                    "parameters" + (f" and the best checkpoint is in {checkpoint}" if checkpoint
                                    and best_params is not None else ""),
                    history,
                )
            if clip is not None:
                grads, _ = clip_grad_norm(grads, clip)
            good = model.state_dict()
            model._assign(optimizer.step(good, grads))
            steps += 1
            loss_sum += loss
            tokens += _tokens(batch, is_lm)
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
            score = -rec["valid_loss"] if is_lm else rec["valid_accuracy"]
            if best_score is None or score > best_score:
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
        model._assign(best_params)
    return history
