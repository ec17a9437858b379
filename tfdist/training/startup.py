"""Time to first step: how long each task takes from process start to its first steps.

Owns the `FirstStepTimer` callback (the seconds from a given process start to the
end of the first training loop call, that is the first `steps_per_loop` steps with
their tracing) and `task_startup_seconds`, which collects every `multi_worker`
task's figure on every task with one all-gather. Under `parameter_server` the
worker and ps tasks run servers, not the loop, so only the chief has a figure: the
time to its first scheduled steps' results. The job writes both to the metrics JSON.
"""

from __future__ import annotations

import time

import keras
import tensorflow as tf


class FirstStepTimer(keras.callbacks.Callback):
    """Records when the first training loop call of `fit` ended.

    Args:
      started_at: `time.time()` at process start.

    Attributes:
      seconds: from `started_at` to the end of the first loop call (None before).
      finished_at: `time.time()` then (None before).
    """

    async_safe = True  # Keras may call it off the main thread: it only reads the clock.

    def __init__(self, started_at: float):
        super().__init__()
        self.started_at = started_at
        self.seconds: float | None = None
        self.finished_at: float | None = None

    def on_train_batch_end(self, batch, logs=None) -> None:
        if self.seconds is None:
            self.finished_at = time.time()
            self.seconds = self.finished_at - self.started_at


def task_startup_seconds(distribution, seconds: float | None) -> list[float | None]:
    """Every task's start-up seconds in task order (chief first) under `multi_worker`
    with several workers, else `[seconds]`. A collective there: every task must call.
    """
    if distribution.is_async or distribution.num_workers < 2:
        return [seconds]
    strategy = distribution.strategy
    mine = -1.0 if seconds is None else float(seconds)
    values = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant([mine], tf.float64)
    )
    local_replicas = len(strategy.extended.worker_devices)
    gathered = strategy.gather(values, axis=0).numpy().tolist()[::local_replicas]
    return [None if value < 0 else value for value in gathered]
