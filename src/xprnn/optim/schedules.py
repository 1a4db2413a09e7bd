"""Learning-rate schedules: callables ``schedule(step) -> float`` for any optimizer's ``lr``."""

from __future__ import annotations

import math
import numbers

from .optimizers import _check, _check_lr, _check_nonneg, _is_number

__all__ = ["step_decay", "cosine_decay", "layerwise"]


def step_decay(lr, step_size, gamma=0.1):
    """``lr * gamma ** (step // step_size)``, like ``torch.optim.lr_scheduler.StepLR``.

    Returns a callable ``schedule(step) -> float`` for the ``lr`` of any optimizer.
    """
    _check_lr(lr)
    if isinstance(step_size, bool) or not isinstance(step_size, numbers.Integral) or step_size < 1:
        raise ValueError(f"Invalid step_size: expected a positive int, got {step_size!r}")
    _check_nonneg("gamma", gamma)

    def schedule(step):
        return lr * gamma ** (step // step_size)

    return schedule


def cosine_decay(lr, total_steps, warmup=0, min_lr=0.0):
    """Linear warm-up then cosine decay from ``lr`` to ``min_lr`` over ``total_steps``.

    ``lr * (step + 1) / warmup`` for ``step < warmup`` (so step 0 already moves), then
    ``min_lr + (lr - min_lr) * (1 + cos(pi * k / K)) / 2`` with ``k = step - warmup`` and
    ``K = total_steps - warmup`` (``torch.optim.lr_scheduler.CosineAnnealingLR``), and
    ``min_lr`` from ``total_steps`` on. Returns a callable ``schedule(step) -> float``.
    """
    _check_lr(lr)
    for name, n, least in (("total_steps", total_steps, 1), ("warmup", warmup, 0)):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < least:
            raise ValueError(f"Invalid {name}: expected an int >= {least}, got {n!r}")
    if warmup >= total_steps:
        raise ValueError(f"Invalid warmup: must be below total_steps={total_steps}, got {warmup}")
    _check(_is_number(min_lr) and 0 <= min_lr <= lr, "min_lr", min_lr)

    def schedule(step):
        if step < warmup:
            return lr * (step + 1) / warmup
        k = min(step - warmup, total_steps - warmup)
        return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * k / (total_steps - warmup))) / 2

    return schedule


def layerwise(groups, factor=1.0, unfreeze_every=None):
    """Per-parameter learning-rate multipliers for fine-tuning (ULMFiT's discriminative rates
    and gradual unfreezing), for an optimizer's ``lr_scale``.

    Parameters
    ----------
    groups : sequence of sequences of str
        Parameter names by layer, the output layer first (e.g.
        :meth:`xprnn.models.SequenceClassifier.layer_groups`).
    factor : float
        Group ``g`` learns at ``lr / factor ** g`` (ULMFiT: 2.6); 1 keeps one rate.
    unfreeze_every : int, optional
        Group ``g`` stays frozen for the first ``g * unfreeze_every`` steps: with the steps of
        one epoch, epoch 1 trains the output layer only, epoch 2 also the top recurrent layer,
        and so on.

    Returns
    -------
    callable ``scale(name, step) -> float``
        Names in no group are treated as the output layer's.
    """
    if not _is_number(factor) or factor < 1:
        raise ValueError(f"Invalid factor: expected a number >= 1, got {factor!r}")
    if unfreeze_every is not None and (isinstance(unfreeze_every, bool) or not isinstance(
            unfreeze_every, numbers.Integral) or unfreeze_every < 1):
        raise ValueError(f"Invalid unfreeze_every: expected a positive int, got "
                         f"{unfreeze_every!r}")
    index = {name: g for g, names in enumerate(groups) for name in names}

    def scale(name, step):
        g = index.get(name, 0)
        if unfreeze_every is not None and step < g * unfreeze_every:
            return 0.0
        return float(factor) ** -g

    return scale
