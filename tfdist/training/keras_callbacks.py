"""Keras callbacks under the trainer: `keras.callbacks` objects driven by its hooks.

Owns running a list of standard or user `keras.callbacks.Callback` objects (History,
the progress bar, EarlyStopping, ModelCheckpoint, ReduceLROnPlateau,
LearningRateScheduler, CSVLogger, TensorBoard, TerminateOnNaN, LambdaCallback, ...)
from `tfdist.training.callbacks` hooks, with the logs Keras' fit would give them.

Distribution rules (the same on every strategy):
- Every task runs the callbacks (under `parameter_server` only the coordinator runs
  the trainer, so only it does). Their logs are read from metrics aggregated over all
  replicas and workers, so a decision taken from them (EarlyStopping, a new learning
  rate) is the same on every worker.
- Batch hooks run once per compiled loop (`steps_per_loop` steps): `batch` is the
  index in the epoch of the loop's first step (begin) or last step (end). The metrics
  are read for a batch's logs only when something uses them (the progress bar of
  `verbose=1`, a callback with its own `on_train_batch_end`/`on_batch_end`); otherwise
  its logs hold the loss only, which the trainer has already. The rule looks at the
  callbacks given, before the chief-only ones are left out, so every task reads (a
  collective under multi_worker) or none does.
- Only the chief writes: on other workers ModelCheckpoint writes into a scratch
  folder (it still runs, so every worker reads the same variables), and CSVLogger
  and TensorBoard are left out; the progress bar shows on the chief only.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import keras

from tfdist.training.callbacks import Callback, LoopLog
from tfdist.training.history import EpochLog

_WRITE_ON_CHIEF_ONLY = (keras.callbacks.CSVLogger, keras.callbacks.TensorBoard)


def _uses_batch_logs(callback: keras.callbacks.Callback) -> bool:
    """Whether `callback` does something at a training batch's end (reads its logs)."""
    base = keras.callbacks.Callback
    return any(
        getattr(getattr(callback, name), "__func__", None) is not getattr(base, name)
        for name in ("on_train_batch_end", "on_batch_end")
    )


def needs_batch_logs(callbacks: Sequence[keras.callbacks.Callback], verbose: int) -> bool:
    """Whether a batch's logs must hold the metrics: the progress bar, or a callback's hook."""
    return verbose == 1 or any(_uses_batch_logs(callback) for callback in callbacks)


def _for_this_task(callbacks: Sequence[keras.callbacks.Callback], is_chief: bool) -> list:
    if is_chief:
        return list(callbacks)
    kept = []
    scratch = None
    for callback in callbacks:
        if isinstance(callback, _WRITE_ON_CHIEF_ONLY):
            continue
        if isinstance(callback, keras.callbacks.ModelCheckpoint):
            scratch = scratch or tempfile.mkdtemp(prefix="tfdist-worker-checkpoint-")
            callback.filepath = os.path.join(scratch, os.path.basename(str(callback.filepath)))
        kept.append(callback)
    return kept


class KerasCallbacks(Callback):
    """Drives Keras callbacks (and a `keras.callbacks.History`) from the trainer's hooks.

    Args:
      callbacks: `keras.callbacks.Callback` objects.
      model: the model they watch (`callback.model`).
      verbose: Keras' `verbose`: 0 silent, 1 progress bar, 2 one line per epoch.
      epochs: the run's last epoch.
      steps_per_epoch: optimizer steps per epoch.
      is_chief: this task writes files and shows progress.
    """

    def __init__(
        self,
        callbacks: Sequence[keras.callbacks.Callback],
        *,
        model: keras.Model,
        verbose: int,
        epochs: int,
        steps_per_epoch: int,
        is_chief: bool,
    ):
        self.history = keras.callbacks.History()
        self.model = model
        show = verbose if is_chief else 0
        self.callbacks = keras.callbacks.CallbackList(
            [*_for_this_task(callbacks, is_chief), self.history],
            add_progbar=show != 0,
            model=model,
            verbose=show,
            epochs=epochs,
            steps=steps_per_epoch,
        )
        self._scheduled = 0
        self._read_batch_logs = needs_batch_logs(callbacks, verbose)

    def on_fit_begin(self, *, epochs, steps_per_epoch, initial_epoch, initial_step):
        self.model.stop_training = False
        self.callbacks.on_train_begin()

    def on_epoch_begin(self, epoch: int) -> None:
        self._scheduled = 0
        self.callbacks.on_epoch_begin(epoch - 1)

    def on_loop_begin(self, step: int, num_steps: int) -> None:
        self.callbacks.on_train_batch_begin(self._scheduled)
        self._scheduled += num_steps

    def on_loop_end(self, loop: LoopLog) -> None:
        read = self._read_batch_logs and loop.logs is not None
        logs = loop.logs() if read else {"loss": loop.loss}
        self.callbacks.on_train_batch_end(loop.epoch_steps - 1, logs)

    def on_epoch_end(self, log: EpochLog) -> None:
        self.callbacks.on_epoch_end(log.epoch - 1, log.keras_logs())

    def on_fit_end(self, history) -> None:
        last = history.epochs[-1].keras_logs() if history.epochs else None
        self.callbacks.on_train_end(last)
