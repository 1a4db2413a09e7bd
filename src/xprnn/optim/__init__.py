"""Optimizers (SGD, Adagrad, Adam, AdamW, as ``torch.optim`` computes them) and learning-rate
schedules. ``new_params = opt.step(params, grads)`` is pure; ``model.update(new_params)`` puts the
result in the model without leaving the device."""

from .optimizers import SGD, Adagrad, Adam, AdamW, Optimizer
from .schedules import cosine_decay, layerwise, step_decay

__all__ = ["Optimizer", "SGD", "Adagrad", "Adam", "AdamW", "step_decay", "cosine_decay",
           "layerwise"]
