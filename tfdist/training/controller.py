"""The controller: the outer loop of a fit, the same for every runner, as Orbit's Controller.

Owns epochs and their calls (Keras' `steps_per_execution` calls of `EpochPlan`'s epochs,
or until the data ends for a source of unknown length), grouped into the runner's
segments; checkpoints (restore on start, a save every `checkpoint_every_steps` and at
each epoch end, the exported model), preemption and the stop vote
(`PreemptionWatcher.agree` after each segment), divergence (a non-finite loss, or
weights, `tfdist.training.divergence`, after each segment), validation, and Keras'
callbacks: the controller calls Keras' `CallbackList` hooks in Keras' order with the
logs the runner's compiled calls return (`on_test_*` too, for fit's validation), and
records the run in the `History`. How steps run is the runner's
(`tfdist.training.runners`); which callbacks run on which task,
`tfdist.training.callbacks`'.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Collection, Iterable
from typing import Any

import keras
import tensorflow as tf

from tfdist.config import CheckpointConfig, ConfigError
from tfdist.data.epochs import Call, EpochPlan, calls
from tfdist.data.pipeline import DatasetFn
from tfdist.distribute.strategies import Distribution
from tfdist.training import run_record
from tfdist.training.checkpoints import CheckpointKeeper, export_model
from tfdist.training.divergence import FiniteWeights
from tfdist.training.history import EpochTiming, History, TrainingDiverged
from tfdist.training.inputs import make_inputs
from tfdist.training.metric_state import Logs
from tfdist.training.model_dir_lock import ModelDirLock
from tfdist.training.preemption import Preempted, PreemptionWatcher
from tfdist.training.runners import Hooks, Runner
from tfdist.training.schedule import cut_at


class TrainState:
    """The run's position, checkpointed with the model.

    Create it in the strategy's scope, once per model. `epoch` counts the epochs done,
    `step` the optimizer steps; `consumed` the batches the run read from its stream of
    training data, `epoch_begin` where in that stream the epoch in progress began, and
    `first_epoch` the epoch the run began at (`initial_epoch`), so a resumed run knows
    its epoch's length and its place in the data.
    """

    def __init__(self) -> None:
        def counter(name: str) -> tf.Variable:
            return tf.Variable(0, dtype=tf.int64, trainable=False, name=name)

        self.epoch = counter("epoch")
        # Counted here, not by optimizer.iterations: Keras 3's assign_add is a read then a
        # write, so under parameter_server concurrent workers lose increments.
        self.step = counter("step")
        self.consumed = counter("consumed")
        self.epoch_begin = counter("epoch_begin")
        self.first_epoch = counter("first_epoch")
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
            consumed=self.consumed,
            epoch_begin=self.epoch_begin,
            first_epoch=self.first_epoch,
            epoch_metrics=self.epoch_metrics,
            **extras,
        )

    def start(self, initial_epoch: int) -> None:
        """A new run (nothing restored) at Keras' `initial_epoch`."""
        for variable, value in (
            (self.epoch, initial_epoch),
            (self.step, 0),
            (self.consumed, 0),
            (self.epoch_begin, 0),
            (self.first_epoch, initial_epoch),
        ):
            variable.assign(value)
        self.epoch_metrics.assign(tf.zeros([0], tf.float64))


@dataclasses.dataclass(frozen=True)
class Validation:
    """What `fit` validates on.

    Attributes:
      fn: the validation dataset function (read once per validated epoch).
      steps: its global batches when known and the same on every worker (a front door's
        batches, `tfdist.data.replica_batches`): Keras' test hooks then come per call.
        None with `equal` (an unknown length, the same on every worker): calls until the
        data ends. None otherwise: one call over each worker's part, no batch hooks.
      equal: every worker reads the same number of batches.
    """

    fn: DatasetFn
    steps: int | None = None
    equal: bool = False


class _TrainHooks:
    """Keras' training batch hooks around the runner's calls."""

    def __init__(self, callbacks: keras.callbacks.CallbackList):
        self.callbacks = callbacks

    def begin(self, call: Call) -> None:
        self.callbacks.on_train_batch_begin(call.first)

    def end(self, call: Call, logs: Logs) -> None:
        self.callbacks.on_train_batch_end(call.last, logs)


class TestHooks(_TrainHooks):
    """Keras' test batch hooks around the runner's evaluation calls."""

    def begin(self, call: Call) -> None:
        self.callbacks.on_test_batch_begin(call.first)

    def end(self, call: Call, logs: Logs) -> None:
        self.callbacks.on_test_batch_end(call.last, logs)


def _finite(logs: Logs) -> bool:
    loss = logs.get("loss")
    return loss is None or math.isfinite(float(loss))


class Controller:
    """Runs a fit: epochs of the runner's calls, with checkpoints and callbacks.

    Args:
      distribution: the strategy the model was built under.
      model: the compiled model.
      runner: the runner built for the model and the loop's settings.
      state: the run's `TrainState`.
      checkpoint: where and how often to save (`model_dir` is checked here, before any
        callback writes under it).
      global_batch_size: examples per micro-batch over all replicas (for examples/s).
      grad_accum_steps: micro-batches per optimizer step.
      steps_per_execution: steps per compiled call (Keras' batch hooks come per call).
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
        steps_per_execution: int,
    ):
        self.distribution = distribution
        self.model = model
        self.runner = runner
        self.state = state
        self.config = checkpoint
        self.steps_per_execution = steps_per_execution
        self._examples_per_step = global_batch_size * grad_accum_steps
        self._grad_accum_steps = grad_accum_steps
        self._keeper: CheckpointKeeper | None = None
        if checkpoint.model_dir:
            self._keeper = CheckpointKeeper(
                state.checkpoint(model, runner.step.optimizer, runner.checkpointed),
                model_dir=checkpoint.model_dir,
                role=distribution.role,
                max_to_keep=checkpoint.keep_checkpoints,
            )
        self._diverged = False
        self._record: dict | None = None  # The resumed checkpoint's run record.
        self._plan = EpochPlan(None, 1, endless=True)
        self._train: Any = None
        self._train_fn: DatasetFn | None = None
        self._fresh = True
        self._finite_weights = FiniteWeights(model, runner.step.optimizer)
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
        plan: EpochPlan,
        validation: Validation | None = None,
        validation_freq: int | Collection[int] = 1,
        initial_epoch: int = 0,
    ) -> History:
        """Trains until epoch `epochs`; a restored run continues from its checkpoint.

        `callbacks` is Keras' list of this task's callbacks, holding `history`; `plan`
        says how many steps each epoch takes (`tfdist.data.epochs`).

        Raises:
          ConfigError: another run is writing the same model_dir (`ModelDirLock`).
        """
        with self._writer_lock():  # Held until the fit ends, however it ends.
            self.callbacks, self.history, self._plan = callbacks, history, plan
            state = self.state
            self._restore(initial_epoch)
            self.runner.start(int(state.step.numpy()))
            # A known plan reads one stream across epochs; a source of unknown length is read
            # a pass an epoch (each epoch ends where its pass does).
            skip = state.consumed if plan.known else state.consumed - state.epoch_begin
            self._train, validation_data = make_inputs(
                self.distribution,
                train_fn,
                validation.fn if validation else None,
                skip_micro_steps=int(skip.numpy()) * self._grad_accum_steps,
            )
            self._train_fn, self._fresh = train_fn, True
            self.model.stop_training = False
            started = time.perf_counter()
            watcher = PreemptionWatcher(
                self.distribution.strategy,
                sync_workers=not self.distribution.is_async and self.distribution.num_workers > 1,
            )
            self.callbacks.on_train_begin()
            self._callback_resume()
            last_logs: Logs | None = None
            if self._finished(epochs):
                return self._finish(last_logs)
            with watcher:
                for epoch in range(int(state.epoch.numpy()) + 1, epochs + 1):
                    validate = validation is not None and validates(epoch, validation_freq)
                    last_logs, stop = self._run_epoch(
                        epoch,
                        (validation, validation_data) if validate and validation else None,
                        watcher,
                        started,
                    )
                    if stop:
                        break
            return self._finish(last_logs)

    def _finished(self, epochs: int) -> bool:
        """Whether the checkpoint resumed from ends a finished run (every epoch done, or a
        callback's stop): then nothing trains, and the chief says so in one line."""
        record = self._record
        if record is None:
            return False
        if not record["stopped"] and int(self.state.epoch.numpy()) < epochs:
            return False
        if self.distribution.role.is_chief:
            print(
                f"tfdist: model_dir {self.config.model_dir} holds a finished run: "
                f"{run_record.summary(record, epochs)}; nothing to train (pass another "
                "model_dir, or more epochs, to train on).",
                file=sys.stderr,
                flush=True,
            )
        return True

    def _write_record(self, *, stopped: bool) -> None:
        """The chief's record of its newest checkpoint: callbacks, History, the stop."""
        if not (self._keeper and self.distribution.role.is_chief and self._keeper.latest):
            return
        run_record.write(
            self._keeper.latest,
            self.callbacks.callbacks,
            self.history,
            epochs_done=int(self.state.epoch.numpy()),
            stopped=stopped,
        )

    def _writer_lock(self) -> contextlib.AbstractContextManager:
        """The chief holds model_dir's lock while it trains: one writer per model_dir."""
        if self.config.model_dir and self.distribution.role.is_chief:
            return ModelDirLock(self.config.model_dir)
        return contextlib.nullcontext()

    def _finish(self, last_logs: Logs | None) -> History:
        history = self.history
        history.final_step = int(self.state.step.numpy())
        history.steps_by_worker = self.runner.steps_by_worker
        history.ps_updates = self.runner.ps_updates
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

    def _restore(self, initial_epoch: int) -> None:
        self._record = None
        if self._keeper:
            self.history.restored_from = self._keeper.restore_latest()
        if self.history.restored_from:
            self._record = run_record.read(self.history.restored_from)
            if self._record is not None:
                run_record.before_train_begin(self._record, self.callbacks.callbacks)
        else:
            self.state.start(initial_epoch)  # A new fit starts at initial_epoch, as Keras'.

    def _callback_resume(self) -> None:
        """A callback's resume, as Keras' fit reads it after `on_train_begin`: Keras'
        `BackupAndRestore` loads its weights and sets `model._initial_epoch`; the run then
        starts at that epoch, reading its data from the start (unless tfdist restored its
        own checkpoint). tfdist's own resume puts back the callbacks' state and the History
        of the epochs done (`tfdist.training.run_record`)."""
        if self._record is not None:
            run_record.restore(self._record, self.callbacks.callbacks, self.history)
        epoch = getattr(self.model, "_initial_epoch", None)
        if epoch is None:
            return
        self.model._initial_epoch = None
        if not self.history.restored_from:
            self.state.start(int(epoch))

    def _epoch_length(self, epoch: int) -> int | None:
        """Steps epoch `epoch` (1-based) takes, or None until the data ends."""
        if not self._plan.known:
            return None
        relative = epoch - 1 - int(self.state.first_epoch.numpy())
        return self._plan.epoch_lengths(relative + 1)[relative]

    def _run_epoch(
        self,
        epoch: int,
        validation: tuple[Validation, Any] | None,
        watcher: PreemptionWatcher,
        started: float,
    ) -> tuple[Logs, bool]:
        """One epoch's remaining steps, validation, the epoch-end save, the callbacks.

        Returns the epoch's logs and whether the run stops after it.
        """
        state = self.state
        self.callbacks.on_epoch_begin(epoch - 1)
        self.runner.epoch_begin()
        done = int(state.consumed.numpy()) - int(state.epoch_begin.numpy())
        saved = state.epoch_metrics.numpy()
        if done and saved.size and saved.size == self.runner.metric_state.size:
            # Resumed mid-epoch: the epoch's earlier steps count too (the same metrics).
            self.runner.restore_epoch_state(tf.constant(saved))
        if not self._plan.known and not self._plan.steps_per_epoch and not self._fresh:
            self._train, _ = make_inputs(self.distribution, self._train_fn, None)  # A new pass.
        self._fresh = False
        began = time.perf_counter()
        logs, ran, stop = self._train_epoch(epoch, done, self._train, watcher)
        seconds = time.perf_counter() - began
        logs = dict(logs) if logs is not None else dict(self.runner.current_logs())
        self._diverged = not _finite(logs)  # Stopped by TerminateOnNaN.
        if validation is not None:
            logs.update(self._validate(*validation))
        state.epoch.assign(epoch)
        state.epoch_begin.assign(state.consumed)
        state.epoch_metrics.assign(tf.zeros([0], tf.float64))
        step = int(state.step.numpy())
        self.history.timings.append(
            EpochTiming(
                epoch=epoch,
                steps=ran,
                examples=ran * self._examples_per_step,
                seconds=seconds,
                global_step=step,
                wall_seconds=time.perf_counter() - started,
                learning_rate=_learning_rate(self.model.optimizer),
            )
        )
        self.callbacks.on_epoch_end(epoch - 1, logs)
        preempted, stop_asked = watcher.agree(stop or bool(self.model.stop_training))
        # Saved after the callbacks: what they changed (a rate ReduceLROnPlateau lowered,
        # their own state in the run record) belongs to this epoch's checkpoint.
        if self._keeper and not self._diverged:  # The last good checkpoint stays the newest.
            self._keeper.save(step)
            self._write_record(stopped=stop_asked)
        if preempted:
            raise Preempted(step, self._keeper.latest if self._keeper else None, watcher.signum)
        return logs, stop_asked or self._diverged

    def _validate(self, validation: Validation, dataset: Any) -> Logs:
        """Fit's validation, with Keras' test hooks: the logs prefixed `val_`."""
        self.callbacks.on_test_begin()
        hooks = TestHooks(self.callbacks)
        if validation.steps is not None:
            plan = calls(0, validation.steps, self.steps_per_execution)
            logs = self.runner.evaluate(dataset, hooks, plan)
        elif validation.equal:
            logs = self.runner.evaluate(dataset, hooks, None)
        else:
            logs = self.runner.evaluate(dataset, hooks, None, whole=True)
        self.callbacks.on_test_end(logs)
        return {f"val_{name}": value for name, value in logs.items()}

    def _train_epoch(
        self, epoch: int, done: int, train: Any, watcher: PreemptionWatcher
    ) -> tuple[Logs | None, int, bool]:
        """The epoch's steps, segment by segment; `(last logs, steps run, stop asked)`."""
        length = self._epoch_length(epoch)
        hooks = _TrainHooks(self.callbacks)
        epoch_start = int(self.state.step.numpy()) - done
        if length is None:
            return self._train_until_the_data_ends(epoch, done, epoch_start, train, hooks, watcher)
        planned = cut_at(
            calls(done, length, self.steps_per_execution),
            epoch_start,
            self.config.checkpoint_every_steps,
        )
        logs, ran = None, 0
        segments = self.runner.segments(planned, epoch_start, self.config.checkpoint_every_steps)
        for index, segment in enumerate(segments):
            logs, count = self.runner.train(train, segment, hooks)
            ran += count
            last = index == len(segments) - 1
            if self._after_segment(epoch, count, logs, watcher, epoch_end=last):
                return logs, ran, True
        return logs, ran, False

    def _train_until_the_data_ends(
        self,
        epoch: int,
        done: int,
        epoch_start: int,
        train: Any,
        hooks: Hooks,
        watcher: PreemptionWatcher,
    ) -> tuple[Logs | None, int, bool]:
        """An epoch of a source of unknown length: calls until one finds the data ended, or
        until `steps_per_epoch` steps (the next epoch then reads on where this one ended)."""
        size, first, logs, ran = self.steps_per_execution, done, None, 0
        limit = self._plan.steps_per_epoch
        while True:
            steps = size if limit is None else min(size, limit - first)
            call = Call(first=first, steps=steps, last=first - first % size + size - 1)
            call_logs, count = self.runner.train(train, [call], hooks, dynamic=True)
            ran += count
            if count:
                logs = call_logs
            ended = count < call.steps or (limit is not None and first + count >= limit)
            if count and self._after_segment(epoch, count, logs, watcher, epoch_end=ended):
                return logs, ran, True
            if ended:
                if not count:
                    self.runner.after_segment(int(self.state.step.numpy()), settle=True)
                return logs, ran, False
            first += count

    def _after_segment(
        self,
        epoch: int,
        count: int,
        logs: Logs | None,
        watcher: PreemptionWatcher,
        *,
        epoch_end: bool,
    ) -> bool:
        """Steps counted; divergence, preemption, checkpoints; whether the run stops."""
        state = self.state
        state.step.assign_add(count)
        state.consumed.assign_add(count)
        step = int(state.step.numpy())
        every = self.config.checkpoint_every_steps
        if logs is not None and not _finite(logs):
            self.runner.after_segment(step, settle=True)
            if self.model.stop_training:  # Keras' TerminateOnNaN ends the run as in Keras.
                return True
            raise TrainingDiverged(step, epoch, self._keeper.latest if self._keeper else None)
        if not self._finite_weights.check():
            latest = self._keeper.latest if self._keeper else None
            raise TrainingDiverged(step, epoch, latest, what="the model's weights")
        if not self._finite_weights.optimizer_check():
            latest = self._keeper.latest if self._keeper else None
            raise TrainingDiverged(step, epoch, latest, what="the optimizer's state")
        preempted, stop = watcher.agree(bool(self.model.stop_training))
        at_boundary = every is not None and step % every == 0
        settle = epoch_end or at_boundary or stop
        self.runner.after_segment(step, settle=settle, snapshot=preempted and not settle)
        if self.distribution.is_async:
            # Keras 3's iterations loses increments to concurrent workers' read-then-write;
            # what callbacks read of it (TensorBoard's x axis) is tfdist's count instead.
            self.model.optimizer.iterations.assign(step)
        if self._keeper and (at_boundary or preempted):
            state.epoch_metrics.assign(self.runner.epoch_state())
            self._keeper.save(step)
            self._write_record(stopped=False)
        if preempted:
            raise Preempted(step, self._keeper.latest if self._keeper else None, watcher.signum)
        return stop


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
