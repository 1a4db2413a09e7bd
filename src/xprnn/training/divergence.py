"""When a run has diverged: the rule that stops ``fit`` on a loss that has exploded.

A non-finite loss stops training at once (:func:`~xprnn.training.step.train_step`). A finite
loss can be just as lost: with a learning rate of ``1e30`` it sits near ``1e30`` for ever and
the model predicts one class for everything. The rule here catches that without tripping on
ordinary noise:

- the **limit** is ``factor`` (100) times the first step's loss, the loss of the model as
  ``fit`` received it (at least ``factor`` times ``floor``, 1.0: a loaded model whose first batch
  happens to be easy must not make the limit tiny);
- the run has **exploded** once ``stretch`` (5) consecutive steps have a loss at or above the
  limit, or when training ends on an epoch that was not **usable**;
- an epoch is usable when its last step's loss and its validation loss (if validated: it sees
  the parameters after the last update, which no training loss has yet) are below the limit.
  Only a usable epoch may become the best or be saved.

For a classifier the first loss is about ``log(classes)`` nats, for a language model about
``log(vocabulary)``; 100 times that means the right answer gets a probability of ``e**-69`` or
less on average, which ordinary training never reaches, while a bump of a few steps does not
count. The first loss is the yardstick: a model that arrives already exploded (loaded with
broken weights) is caught only once its loss is not finite.

Under data parallelism the rule reads the loss after the all-reduce and the validation loss
after its sums are added, the same in every process, so every process decides alike at the same
step with no extra exchange.
"""

from __future__ import annotations

from .history import TrainingDiverged

__all__ = ["Divergence"]


class Divergence:
    """Watches the losses of a run and raises :class:`TrainingDiverged` when they explode.

    Parameters
    ----------
    factor : float
        How far above the first step's loss a loss counts as exploded.
    stretch : int
        How many consecutive exploded steps stop the run.
    floor : float
        The first loss is taken as at least this when setting the limit.
    """

    def __init__(self, factor=100.0, stretch=5, floor=1.0):
        self.factor, self.stretch, self.floor = float(factor), int(stretch), float(floor)
        self.first = None  # the first step's loss
        self.last = None  # the latest loss looked at (a step's, or a validation's)
        self.streak = 0  # consecutive steps at or above the limit, up to the latest
        self.usable = True  # whether the latest epoch ended usable

    @property
    def limit(self):
        """The loss at or above which a step counts as exploded (None before the first)."""
        if self.first is None:
            return None
        return self.factor * max(abs(self.first), self.floor)

    def exploded(self, loss):
        """Whether ``loss`` is at or above the limit (NaN is)."""
        return self.limit is not None and not loss < self.limit

    @property
    def above(self):
        """Whether the latest step's loss was at or above the limit."""
        return self.streak > 0

    def observe(self, loss):
        """Record one step's (finite) loss; raises :class:`TrainingDiverged` (without a
        history: ``fit`` adds it) once ``stretch`` steps in a row were at or above the limit."""
        if self.first is None:
            self.first = float(loss)
        self.last = float(loss)
        self.streak = self.streak + 1 if self.exploded(loss) else 0
        if self.streak >= self.stretch:
            raise TrainingDiverged(self._reason(f"for {self.streak} steps"), None)

    def end_epoch(self, valid_loss=None):
        """Whether the epoch just ended is usable: its last step's loss and ``valid_loss``
        (when validated) below the limit."""
        self.usable = not self.above
        if self.usable and valid_loss is not None and self.exploded(valid_loss):
            self.usable, self.last = False, float(valid_loss)
        return self.usable

    def check_end(self):
        """At the end of training: raises if the last epoch was not usable, since the model then
        holds the parameters of an exploded run."""
        if not self.usable:
            raise TrainingDiverged(self._reason("when training ended"), None)

    def _reason(self, how):
        return (f"loss exploded ({self.last:.3g}, at or above {self.limit:.3g} = "
                f"{self.factor:g} times the first step's {self.first:.3g}, {how})")

    def state(self):
        """What a training state saves (JSON-able)."""
        return {"first": self.first, "last": self.last, "streak": self.streak,
                "usable": self.usable}

    def restore(self, state):
        """The inverse of :meth:`state`; ``None`` (a state saved before this rule) starts
        afresh."""
        if state:
            self.first, self.last = state["first"], state["last"]
            self.streak, self.usable = int(state["streak"]), bool(state["usable"])
