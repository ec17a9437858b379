"""What a fit reports: Keras' `History`, with tfdist's record of the run on it.

Owns `History`, the one history both front doors return: a `keras.callbacks.History`
(the logs per epoch under Keras' keys, filled by Keras' callback protocol like any
other callback) that also carries what tfdist measured: the optimizer step the run
ended at, the checkpoint it resumed from, the steps each parameter-server worker ran,
and per epoch its steps, examples and seconds (`EpochTiming`), from which examples/s
come. And `TrainingDiverged`, the error that stops a run whose loss or weights became NaN
or infinite.
"""

from __future__ import annotations

import dataclasses

import keras


@dataclasses.dataclass(frozen=True)
class EpochTiming:
    """What one epoch cost: its steps and examples, seconds, and where the run stood after.

    Attributes:
      epoch: the epoch (1-based).
      steps: optimizer steps this run took in it (fewer than an epoch's when resumed).
      examples: training examples those steps consumed, over all replicas and workers.
      seconds: wall time of its training steps (validation not included).
      global_step: the optimizer step at its end.
      wall_seconds: seconds since `fit` began, at its end (validation included).
      learning_rate: the optimizer's learning rate at its end.
    """

    epoch: int
    steps: int
    examples: int
    seconds: float
    global_step: int
    wall_seconds: float
    learning_rate: float | None = None

    @property
    def examples_per_sec(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else 0.0


class History(keras.callbacks.History):
    """Keras' History of a fit, plus tfdist's record of the run.

    Attributes:
      history: Keras' `{key: [value per epoch]}`.
      epoch: the 0-based epochs run, as Keras records them.
      timings: one `EpochTiming` per epoch run.
      final_step: the optimizer step the run ended at.
      restored_from: the checkpoint a resumed run began from, or None.
      steps_by_worker: `parameter_server` only (else None): how many of the steps each
        worker ran, by worker index, resumed runs' earlier steps included.
      ps_updates: `parameter_server` with `sync_every` only (else None): the updates the
        ps received (one per round of at most `sync_every` steps of a worker), resumed
        runs' earlier ones included.
    """

    def __init__(self) -> None:
        super().__init__()
        self.timings: list[EpochTiming] = []
        self.final_step = 0
        self.restored_from: str | None = None
        self.steps_by_worker: list[int] | None = None
        self.ps_updates: int | None = None

    def on_train_begin(self, logs: dict[str, object] | None = None) -> None:
        super().on_train_begin(logs)
        self.timings = []

    def examples_per_sec(self) -> float:
        """Training throughput after the first epoch (warm-up), or of the only epoch."""
        timed = self.timings[1:] or self.timings
        seconds = sum(t.seconds for t in timed)
        return sum(t.examples for t in timed) / seconds if seconds > 0 else 0.0

    def last(self, key: str) -> object:
        """The last epoch's value of `key`, or None when the run did not log it."""
        values = self.history.get(key)
        return values[-1] if values else None


class TrainingDiverged(FloatingPointError):
    """The training loss, or the model's weights, became NaN or infinite; nothing was saved
    after the last good step.

    Attributes:
      step, epoch: where it was seen (after the compiled call that ended at `step`).
      checkpoint: the last good checkpoint, or None.
      what: "training loss", or "the model's weights" (or "the optimizer's state") when
        those turned while the loss stayed finite (Keras' clipped cross-entropy can hide
        NaN inputs that way).
    """

    def __init__(self, step: int, epoch: int, checkpoint: str | None, what: str = "training loss"):
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint kept"
        finite = " while the loss stayed finite" if what != "training loss" else ""
        super().__init__(
            f"{what} became NaN/inf by step {step} (epoch {epoch}){finite}; {kept}. "
            "Lower learning_rate or check the data for NaN/inf."
        )
        self.step, self.epoch, self.checkpoint, self.what = step, epoch, checkpoint, what
