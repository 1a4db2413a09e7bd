"""One training step, the same for every model: loss and gradients -> reduction across
processes -> gradient hook -> clipping -> optimizer -> update, all on the model's device.

The hook is the seam for anything that must see the gradients of every step before they are
used, e.g. an all-reduce that sums them across processes (data parallelism).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .clip import clip_grad_norm
from .history import TrainingDiverged

__all__ = ["StepResult", "train_step"]


class StepResult(NamedTuple):
    """What :func:`train_step` reports."""

    loss: float  # the batch's loss before the update
    grad_norm: float | None  # global gradient norm before clipping (None without clipping)
    carry: object  # what flows to the next batch (a language model's state), else None


def train_step(model, batch, optimizer, *, carry=None, clip=None, grad_hook=None, reduce=None):
    """Run one batch through ``model``'s training protocol and update its parameters.

    Parameters
    ----------
    model : a model with ``train_batch`` (:mod:`xprnn.models.base`)
    batch : tuple
        One batch as the model takes it.
    optimizer : :class:`xprnn.optim.Optimizer`
    carry : optional
        What the previous step returned as ``carry`` (truncated BPTT state).
    clip : float, optional
        Clip the global gradient norm to this value.
    grad_hook : callable ``(grads) -> grads``, optional
        Called on the gradients before clipping.
    reduce : callable ``(grads, loss) -> (grads, loss)``, optional
        Called first, before the loss is read: the seam where data parallelism sums the
        gradients and the loss across processes in one exchange
        (:meth:`~xprnn.training.parallel.DataParallel.reduce_step`), so every process sees the
        same loss and a non-finite one stops them all at the same step.

    Returns
    -------
    StepResult

    Raises
    ------
    TrainingDiverged
        If the loss is NaN or infinite; the parameters are then left untouched. The loss is the
        one value read back to the host each step (to decide exactly this).
    """
    loss, grads, carry = model.train_batch(batch, carry)
    if reduce is not None:  # data parallelism: the loss travels with the gradients
        grads, loss = reduce(grads, loss)
    loss = float(loss)
    if not math.isfinite(loss):
        raise TrainingDiverged(f"non-finite loss ({loss})", None)
    if grad_hook is not None:
        grads = grad_hook(grads)
    norm = None
    if clip is not None:
        grads, norm = clip_grad_norm(grads, clip)
    model.update(optimizer.step(model.state_dict(), grads))
    return StepResult(loss, norm, carry)
