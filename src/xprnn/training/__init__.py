"""Training: gradient clipping, one model-agnostic training step, the ``fit`` loop with
validation and early stopping, ``evaluate``, and the ``History`` of a run."""

from .clip import clip_grad_norm
from .history import History, TrainingDiverged, TrainingInterrupted
from .loop import evaluate, fit
from .state import ResumeError, load_state, save_state
from .step import StepResult, train_step

__all__ = ["clip_grad_norm", "train_step", "StepResult", "fit", "evaluate", "History",
           "TrainingDiverged", "TrainingInterrupted", "save_state", "load_state", "ResumeError"]
