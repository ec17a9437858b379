"""The controller: the outer loop of a fit, the same for every runner, as Orbit's Controller.

Owns epochs and their segments of steps, checkpoints (restore on start, a save every
`checkpoint_every_steps` and at each epoch end, the exported model), preemption and the
stop vote (`PreemptionWatcher.agree` after each segment), divergence (a non-finite loss,
or weights, `tfdist.training.divergence`, after each segment), validation, and
Keras' callbacks: the controller calls Keras' `CallbackList` hooks in Keras' order with
the logs the runner's compiled calls return, and records the run in the `History`. How
steps run is the runner's (`tfdist.training.runners`); which callbacks run on which
task, `tfdist.training.callbacks`'.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Collection, Iterable
from typing import Any

import keras
import tensorflow as tf

from tfdist.config import CheckpointConfig, ConfigError
from tfdist.data.pipeline import DatasetFn
from tfdist.distribute.strategies import Distribution
from tfdist.training.checkpoints import CheckpointKeeper, export_model
from tfdist.training.divergence import FiniteWeights
from tfdist.training.history import EpochTiming, History, TrainingDiverged
from tfdist.training.inputs import make_inputs
from tfdist.training.metric_state import Logs
from tfdist.training.preemption import Preempted, PreemptionWatcher
from tfdist.training.runners import Runner


class TrainState:
    """The run's position, checkpointed with the model: step, epoch, the epoch in progress.

    Create it in the strategy's scope, once per model.
    """

    def __init__(self) -> None:
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        # Counted here, not by optimizer.iterations: Keras 3's assign_add is a read then a
        # write, so under parameter_server concurrent workers lose increments.
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        # The metric state of the epoch in progress at a mid-epoch checkpoint, so a resumed
        # epoch reports all of its steps; empty at epoch ends.
        self.epoch_metrics = tf.Variable(
            tf.zeros([0], tf.float64),
            trainable=False,
            shape=tf.TensorShape([None]),
            name="epoch_metrics",
        )

    def checkpoint(
        self, model: keras.Model, optimizer: Any, extras: dict[str, Any]
    ) -> tf.train.Checkpoint:
        return tf.train.Checkpoint(
            model=model,
            optimizer=optimizer,
            epoch=self.epoch,
            step=self.step,
            epoch_metrics=self.epoch_metrics,
            **extras,
        )


@dataclasses.dataclass
class _Batches:
    """Keras' batch hooks around the runner's calls: indices within the epoch, timing."""

    callbacks: keras.callbacks.CallbackList
    scheduled: int = 0
    done: int = 0

    def begin(self, num_steps: int) -> None:
        self.callbacks.on_train_batch_begin(self.scheduled)
        self.scheduled += num_steps

    def end(self, num_steps: int, logs: Logs) -> None:
        self.done += num_steps
        self.callbacks.on_train_batch_end(self.done - 1, logs)


def _finite(logs: Logs) -> bool:
    loss = logs.get("loss")
    return loss is None or math.isfinite(float(loss))


class Controller:
    """Runs a fit: epochs of segments of the runner's calls, with checkpoints and callbacks.

    Args:
      distribution: the strategy the model was built under.
      model: the compiled model.
      runner: the runner built for the model and the loop's settings.
      state: the run's `TrainState`.
      checkpoint: where and how often to save.
      global_batch_size: examples per micro-batch over all replicas (for examples/s).
      grad_accum_steps: micro-batches per optimizer step.
    """

    def __init__(
        self,
        *,
        distribution: Distribution,
        model: keras.Model,
        runner: Runner,
        state: TrainState,
        checkpoint: CheckpointConfig,
        global_batch_size: int,
        grad_accum_steps: int,
    ):
        self.distribution = distribution
        self.model = model
        self.runner = runner
        self.state = state
        self.config = checkpoint
        self._examples_per_step = global_batch_size * grad_accum_steps
        self._keeper: CheckpointKeeper | None = None
        if checkpoint.model_dir:  # Checked here, before any callback writes under it.
            self._keeper = CheckpointKeeper(
                state.checkpoint(model, runner.step.optimizer, runner.checkpointed),
                model_dir=checkpoint.model_dir,
                role=distribution.role,
                max_to_keep=checkpoint.keep_checkpoints,
            )
        self._diverged = False
        self._finite_weights = FiniteWeights(model)
        self.callbacks = keras.callbacks.CallbackList()
        self.history = History()

    # ----- the outer loop ----------------------------------------------------------------
    def fit(
        self,
        train_fn: DatasetFn,
        *,
        callbacks: keras.callbacks.CallbackList,
        history: History,
        epochs: int,
        steps_per_epoch: int,
        validation_fn: DatasetFn | None = None,
        validation_freq: int | Collection[int] = 1,
        initial_epoch: int = 0,
    ) -> History:
        """Trains until epoch `epochs`; a restored run continues from its checkpoint.

        `callbacks` is Keras' list of this task's callbacks, holding `history`.
        """
        self.callbacks, self.history = callbacks, history
        state = self.state
        self._restore(initial_epoch, steps_per_epoch)
        self.runner.start(int(state.step.numpy()))
        first_epoch = int(state.epoch.numpy()) + 1
        done_in_epoch = int(state.step.numpy()) - (first_epoch - 1) * steps_per_epoch
        train, validation = make_inputs(
            self.distribution,
            train_fn,
            validation_fn,
            skip_micro_steps=int(state.step.numpy()) * self.runner.step.grad_accum_steps,
        )
        self.model.stop_training = False
        started = time.perf_counter()
        watcher = PreemptionWatcher(
            self.distribution.strategy,
            sync_workers=not self.distribution.is_async and self.distribution.num_workers > 1,
        )
        self.callbacks.on_train_begin()
        last_logs: Logs | None = None
        with watcher:
            for epoch in range(first_epoch, epochs + 1):
                validate = validates(epoch, validation_freq) and validation is not None
                last_logs, stop = self._run_epoch(
                    epoch,
                    steps_per_epoch,
                    max(0, done_in_epoch),
                    train,
                    validation if validate else None,
                    watcher,
                    started,
                )
                done_in_epoch = 0
                if stop:
                    break
        history.final_step = int(state.step.numpy())
        history.steps_by_worker = self.runner.steps_by_worker
        if self._keeper:
            self._keeper.close()
        chief = self.distribution.role.is_chief
        if self.config.model_dir and self.config.export and chief and not self._diverged:
            export_model(self.model, self.config.model_dir)
        if isinstance(self.model.optimizer, keras.optimizers.Optimizer):
            with self.distribution.scope():
                self.model.optimizer.finalize_variable_values(self.model.trainable_weights)
        self.callbacks.on_train_end(last_logs)
        return history

    def _restore(self, initial_epoch: int, steps_per_epoch: int) -> None:
        config, state = self.config, self.state
        if self._keeper:
            self.history.restored_from = self._keeper.restore_latest()
        if not self.history.restored_from and (initial_epoch or not config.model_dir):
            # A new fit starts at initial_epoch, as Keras' does.
            state.epoch.assign(initial_epoch)
            state.step.assign(initial_epoch * steps_per_epoch)
            state.epoch_metrics.assign(tf.zeros([0], tf.float64))

    def _run_epoch(
        self,
        epoch: int,
        steps_per_epoch: int,
        done: int,
        train: Any,
        validation: Any,
        watcher: PreemptionWatcher,
        started: float,
    ) -> tuple[Logs, bool]:
        """One epoch's remaining steps, validation, the epoch-end save, the callbacks.

        Returns the epoch's logs and whether the run stops after it.
        """
        self.callbacks.on_epoch_begin(epoch - 1)
        self.runner.epoch_begin()
        saved = self.state.epoch_metrics.numpy()
        if saved.size and saved.size == self.runner.metric_state.size:
            # Resumed mid-epoch: the epoch's earlier steps count too (the same metrics).
            self.runner.restore_epoch_state(tf.constant(saved))
        began = time.perf_counter()
        logs, stop = self._train_segments(epoch, steps_per_epoch - done, done, train, watcher)
        seconds = time.perf_counter() - began
        logs = dict(logs) if logs is not None else dict(self.runner.current_logs())
        self._diverged = not _finite(logs)  # Stopped by TerminateOnNaN.
        if validation is not None:
            val_logs = self.runner.evaluate(validation)
            logs.update({f"val_{name}": value for name, value in val_logs.items()})
        self.state.epoch.assign(epoch)
        self.state.epoch_metrics.assign(tf.zeros([0], tf.float64))
        step = int(self.state.step.numpy())
        if self._keeper and not self._diverged:  # The last good checkpoint stays the newest.
            self._keeper.save(step)
        self.history.timings.append(
            EpochTiming(
                epoch=epoch,
                steps=steps_per_epoch - done,
                examples=(steps_per_epoch - done) * self._examples_per_step,
                seconds=seconds,
                global_step=step,
                wall_seconds=time.perf_counter() - started,
                learning_rate=_learning_rate(self.model.optimizer),
            )
        )
        self.callbacks.on_epoch_end(epoch - 1, logs)
        preempted, stop_asked = watcher.agree(stop or bool(self.model.stop_training))
        if preempted:
            raise Preempted(step, self._keeper.latest if self._keeper else None)
        return logs, stop_asked or self._diverged

    def _train_segments(
        self, epoch: int, steps: int, done: int, train: Any, watcher: PreemptionWatcher
    ) -> tuple[Logs | None, bool]:
        """The epoch's steps, segment by segment; `(last logs, stop asked)`."""
        batches = _Batches(self.callbacks, scheduled=done, done=done)
        every = self.config.checkpoint_every_steps
        logs = None
        for calls in self.runner.segments(int(self.state.step.numpy()), steps, every):
            logs = self.runner.train(train, calls, batches)
            self.state.step.assign_add(sum(calls))
            step = int(self.state.step.numpy())
            self.runner.after_segment(step)
            if not _finite(logs):
                if self.model.stop_training:  # Keras' TerminateOnNaN ends the run as in Keras.
                    return logs, True
                raise TrainingDiverged(step, epoch, self._keeper.latest if self._keeper else None)
            if not self._finite_weights.check():
                latest = self._keeper.latest if self._keeper else None
                raise TrainingDiverged(step, epoch, latest, what="the model's weights")
            preempted, stop = watcher.agree(bool(self.model.stop_training))
            at_boundary = every and step % every == 0
            if self._keeper and (at_boundary or preempted):
                self.state.epoch_metrics.assign(self.runner.epoch_state())
                self._keeper.save(step)
            if preempted:
                raise Preempted(step, self._keeper.latest if self._keeper else None)
            if stop:
                return logs, True
        return logs, False


def _learning_rate(optimizer: Any) -> float | None:
    try:
        return float(tf.convert_to_tensor(optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):
        return None


def validates(epoch: int, validation_freq: object) -> bool:
    """Keras' rule: an int validates every that many epochs; a collection, those epochs."""
    if isinstance(validation_freq, bool):
        raise ConfigError(
            f"validation_freq ({validation_freq!r}) must be a positive integer or a list of epochs."
        )
    if isinstance(validation_freq, int):
        if validation_freq < 1:
            raise ConfigError(f"validation_freq ({validation_freq}) must be at least 1.")
        return epoch % validation_freq == 0
    if not isinstance(validation_freq, Iterable) or isinstance(validation_freq, str):
        raise ConfigError(
            f"validation_freq ({validation_freq!r}) must be a positive integer or a list of epochs."
        )
    return epoch in set(validation_freq)
