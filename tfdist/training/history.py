"""What a `fit` reports: one `EpochLog` per epoch, the `History` of a run, and the
`TrainingDiverged` error that stops a run whose loss became NaN or infinite.

Plain records, no TensorFlow: callbacks, progress, summaries and the CLI read them.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class EpochLog:
    """What one epoch did; accuracies are None when the trainer does not measure them.

    `global_step` is the optimizer step at the epoch's end, `wall_seconds` the
    time since `fit` began (training, validation, callbacks), `metrics` the
    results of the trainer's Keras metrics on this epoch's training batches (a compiled
    model's metrics, by their Keras names), `val_metrics` the same on validation.
    """

    epoch: int
    steps: int
    train_loss: float
    train_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    train_seconds: float
    examples: int
    global_step: int = 0
    wall_seconds: float = 0.0
    learning_rate: float | None = None
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    val_metrics: dict[str, float] = dataclasses.field(default_factory=dict)

    def keras_logs(self) -> dict[str, float]:
        """The epoch's logs as Keras' fit gives them: `loss`, metrics, `val_*`."""
        logs = {"loss": self.train_loss}
        if self.train_accuracy is not None:
            logs["accuracy"] = self.train_accuracy
        logs.update(self.metrics)
        if self.val_loss is not None:
            logs["val_loss"] = self.val_loss
        if self.val_accuracy is not None:
            logs["val_accuracy"] = self.val_accuracy
        logs.update({f"val_{name}": value for name, value in self.val_metrics.items()})
        return logs

    @property
    def examples_per_sec(self) -> float:
        return self.examples / self.train_seconds if self.train_seconds > 0 else 0.0


@dataclasses.dataclass
class History:
    """The epochs a `fit` ran, in order, and the optimizer step it ended at.

    `steps_by_worker` (`parameter_server` only, else None): how many of the steps each
    worker ran, by worker index, resumed runs' earlier steps included; it sums to
    `final_step` unless `initial_epoch` skipped steps no worker ran.
    """

    epochs: list[EpochLog] = dataclasses.field(default_factory=list)
    final_step: int = 0
    restored_from: str | None = None
    steps_by_worker: list[int] | None = None

    def examples_per_sec(self) -> float:
        """Training throughput after the first epoch (warm-up), or of the only epoch."""
        timed = self.epochs[1:] or self.epochs
        seconds = sum(e.train_seconds for e in timed)
        return sum(e.examples for e in timed) / seconds if seconds > 0 else 0.0

    def as_dicts(self) -> list:
        return [dataclasses.asdict(e) for e in self.epochs]


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite; nothing was saved after the last good step."""

    def __init__(self, step: int, epoch: int, checkpoint: str | None):
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint kept"
        super().__init__(
            f"training loss became NaN/inf by step {step} (epoch {epoch}); {kept}. "
            "Lower learning_rate or check the data for NaN/inf."
        )
        self.step, self.epoch, self.checkpoint = step, epoch, checkpoint
