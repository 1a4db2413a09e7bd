"""``History``, the per-epoch record of a training run, and ``TrainingDiverged``."""

from __future__ import annotations

__all__ = ["History", "TrainingDiverged", "TrainingInterrupted"]


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the model holds its last good parameters."""

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C after finishing the step it was in.

    Attributes
    ----------
    history : History
    saved : pathlib.Path or None
        The training state written on the way out (``fit(..., state=...)``), from which
        ``fit(..., resume=...)`` continues exactly.
    epoch, batch : int
        Where it stopped: ``batch`` batches of epoch ``epoch`` were done.
    """

    def __init__(self, message, history, saved, epoch, batch):
        super().__init__(message)
        self.history, self.saved, self.epoch, self.batch = history, saved, epoch, batch


class History:
    """Per-epoch records: ``history.epochs`` is a list of dicts (``epoch``, ``train_loss``,
    ``valid_*`` metrics, ``seconds``, ``tokens_per_s``); ``world_size`` is the number of
    processes that trained together (:mod:`xprnn.training.parallel`; tokens per second count
    them all)."""

    def __init__(self):
        self.epochs = []
        self.best_epoch = None
        self.stop_reason = None
        self.world_size = 1

    def __getitem__(self, key):
        return [e.get(key) for e in self.epochs]

    def to_dict(self):
        """The history as JSON-able data (``history.json``)."""
        return {"epochs": self.epochs, "best_epoch": self.best_epoch,
                "stop_reason": self.stop_reason, "world_size": self.world_size}

    @classmethod
    def from_dict(cls, d):
        """The inverse of :meth:`to_dict`."""
        h = cls()
        h.epochs, h.best_epoch, h.stop_reason = list(d["epochs"]), d["best_epoch"], d[
            "stop_reason"]
        h.world_size = int(d.get("world_size", 1))  # written before data parallelism: 1
        return h

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
