"""Callbacks: the hooks the trainer's outer loop calls, and what it tells them.

Owns the hook interface (`Callback`: fit begins, a compiled loop begins and
ends, an epoch ends, fit ends), the record of one loop (`LoopLog`), and
`CallbackList`, which the trainer uses to time loops, count steps and
examples, and call every callback in order. What a callback does belongs to its
own module (`progress` prints, `summaries` writes TensorBoard files).

The trainer calls the callbacks on every task it runs on; whoever builds them
decides which task gets which (`job` gives the chief its progress bar and
summaries, and other workers a progress bar only with `--verbose`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from tfdist.training.history import EpochLog, History


@dataclasses.dataclass(frozen=True)
class LoopLog:
    """What one `tf.function` loop of `num_steps` optimizer steps did.

    Attributes:
      epoch: the epoch the loop belongs to (1-based).
      step: the optimizer step after the loop, counted from where fit started.
      num_steps: optimizer steps in this loop.
      epoch_steps: steps done in this epoch so far, this loop included.
      steps_per_epoch: steps the epoch will have.
      seconds: wall time of the loop (from the end of the previous one).
      examples: training examples the loop consumed, over all replicas and workers.
      loss: mean training loss of the epoch so far.
      logs: returns the epoch's metrics so far as Keras logs them (`{"loss": ...}`);
        under multi_worker reading them is a collective, so a callback that calls it
        must do so on every worker.
    """

    epoch: int
    step: int
    num_steps: int
    epoch_steps: int
    steps_per_epoch: int
    seconds: float
    examples: int
    loss: float
    logs: Callable[[], dict] | None = dataclasses.field(default=None, compare=False)

    @property
    def examples_per_sec(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else 0.0


class Callback:
    """Base class of trainer callbacks; override the hooks you need (each does nothing)."""

    def on_fit_begin(
        self, *, epochs: int, steps_per_epoch: int, initial_epoch: int, initial_step: int
    ) -> None:
        """Called once before the first epoch; `initial_*` are restored values (0 fresh)."""

    def on_epoch_begin(self, epoch: int) -> None:
        """Called before the epoch's first loop (`epoch` is 1-based)."""

    def on_loop_begin(self, step: int, num_steps: int) -> None:
        """Called before a loop runs (or is scheduled) steps `step + 1 .. step + num_steps`."""

    def on_loop_end(self, loop: LoopLog) -> None:
        """Called after a loop's results are in."""

    def on_epoch_end(self, log: EpochLog) -> None:
        """Called after an epoch's validation and checkpoint."""

    def on_fit_end(self, history: History) -> None:
        """Called once after the last epoch."""


class CallbackList:
    """Calls callbacks in order; turns the trainer's running totals into LoopLogs.

    Args:
      callbacks: objects with any of `Callback`'s hooks (missing hooks are skipped).
    """

    def __init__(self, callbacks: Sequence[Callback] = ()):
        self.callbacks = tuple(callbacks)
        self._fit_started = self._mark = time.perf_counter()
        self._steps_per_epoch = 0
        self._epoch = 0
        self._scheduled = self._done = 0
        self._epoch_steps = 0
        self._examples = 0

    def _call(self, hook: str, *args, **kwargs) -> None:
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if method is not None:
                method(*args, **kwargs)

    @property
    def wall_seconds(self) -> float:
        """Seconds since `fit_begin`."""
        return time.perf_counter() - self._fit_started

    def fit_begin(
        self, *, epochs: int, steps_per_epoch: int, initial_epoch: int, initial_step: int
    ) -> None:
        self._fit_started = time.perf_counter()
        self._steps_per_epoch = steps_per_epoch
        self._scheduled = self._done = initial_step
        self._call(
            "on_fit_begin",
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            initial_epoch=initial_epoch,
            initial_step=initial_step,
        )

    def epoch_begin(self, epoch: int) -> None:
        self._epoch, self._epoch_steps, self._examples = epoch, 0, 0
        self._call("on_epoch_begin", epoch)
        self._mark = time.perf_counter()

    def loop_begin(self, num_steps: int) -> None:
        """Before a loop runs or, under parameter_server, is scheduled."""
        self._call("on_loop_begin", self._scheduled, num_steps)
        self._scheduled += num_steps

    def loop_end(self, num_steps: int, epoch_totals, logs_fn=None) -> None:
        """After a loop; `epoch_totals` = [loss sum, correct, examples] of the epoch so far.

        `logs_fn(epoch_totals)` gives the loop's Keras logs (`LoopLog.logs`).
        """
        loss_sum, _, count = (float(value) for value in epoch_totals)
        now = time.perf_counter()
        self._done += num_steps
        self._epoch_steps += num_steps
        loop = LoopLog(
            epoch=self._epoch,
            step=self._done,
            num_steps=num_steps,
            epoch_steps=self._epoch_steps,
            steps_per_epoch=self._steps_per_epoch,
            seconds=now - self._mark,
            examples=int(count) - self._examples,
            loss=loss_sum / count if count else 0.0,
            logs=(lambda: logs_fn(epoch_totals)) if logs_fn else None,
        )
        self._examples = int(count)
        self._call("on_loop_end", loop)
        self._mark = time.perf_counter()

    def epoch_end(self, log: EpochLog) -> None:
        self._call("on_epoch_end", log)

    def fit_end(self, history: History) -> None:
        self._call("on_fit_end", history)
