"""Trainer: a compiled Keras model's training under its strategy, below `tfdist.fit`.

Owns what one model needs to train under one `LoopConfig`: the checks of the loop
against the model and strategy (`check_loop_fits`), the optimizer built eagerly in scope
(keras-team/keras#23085), the run's `TrainState`, the `Step` and the runner for the
strategy (`runners`, `local_sgd`), built once; and `fit`/`evaluate` on dataset
functions, through the controller (`tfdist.training.controller`). `tfdist.fit` turns
Keras' inputs into dataset functions and calls this; so does the command line's job.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import keras
from keras.src.utils.python_utils import pythonify_logs

from tfdist.config import ConfigError, LoopConfig, check_loop_fits, per_replica_batch_size
from tfdist.data.pipeline import DatasetFn
from tfdist.distribute.communication import GradientReducer
from tfdist.distribute.strategies import Distribution
from tfdist.training.callbacks import callback_list, check_callbacks, check_verbose
from tfdist.training.controller import Controller, TrainState
from tfdist.training.history import History
from tfdist.training.inputs import make_inputs, whole_split_context
from tfdist.training.local_sgd import LocalGradients, LocalSGDRunner
from tfdist.training.runners import CoordinatorRunner, Runner, SyncRunner, summed_metrics
from tfdist.training.step import Step, own_train_step


def check_compiled(model: object, what: str) -> None:
    """`model` is a compiled `keras.Model` (what `tfdist.{what}` needs)."""
    if not isinstance(model, keras.Model):
        raise ConfigError(f"tfdist.{what} takes a keras.Model, got {type(model).__name__}.")
    if not getattr(model, "compiled", False):
        raise ConfigError(
            f"model {model.name!r} is not compiled; call model.compile(optimizer=..., "
            f"loss=..., metrics=...) inside the strategy's scope before tfdist.{what}."
        )


class BuiltFrom:
    """What a model's compiled calls were built from: its `compile()` (Keras makes a new loss
    tracker at each), its optimizer and its trainable variables. Equal only while all hold;
    it keeps them alive, so an identity is never reused by another object."""

    def __init__(self, model: keras.Model):
        self._compiled = (model._loss_tracker, model.optimizer)
        self._trainable = tuple(model.trainable_variables)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, BuiltFrom)
            and all(a is b for a, b in zip(self._compiled, other._compiled, strict=True))
            and len(self._trainable) == len(other._trainable)
            and all(a is b for a, b in zip(self._trainable, other._trainable, strict=True))
        )


def build_variables(model: keras.Model, distribution: Distribution, dataset_fn: DatasetFn) -> None:
    """Creates the model's, metrics' and optimizer's variables eagerly in scope.

    From the element spec of `dataset_fn`'s data, as Keras' own fit does
    (`_symbolic_build`): Keras 3.14+ fails when a stateful optimizer's slots are first made
    while a distributed tf.function traces (keras-team/keras#23085), and the metric state
    a runner packs must hold every metric's variables.
    """
    spec = dataset_fn(whole_split_context()).element_spec
    with distribution.scope():
        model._symbolic_build(data_batch=spec)
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)


class Trainer:
    """Trains a compiled Keras 3 model built under `distribution`'s scope.

    Args:
      distribution: from `tfdist.make_strategy`.
      model: a model built and compiled in the strategy's scope (`model.compile`: its
        optimizer, loss, metrics).
      loop: the loop's settings (`LoopConfig`): steps per compiled call, gradient
        accumulation, communication, local SGD, checkpoints.
    """

    def __init__(
        self, distribution: Distribution, model: keras.Model, loop: LoopConfig | None = None
    ):
        check_compiled(model, "Trainer")
        loop = LoopConfig() if loop is None else loop
        if not isinstance(loop, LoopConfig):
            raise ConfigError(f"loop ({loop!r}) must be a tfdist LoopConfig.")
        check_loop_fits(
            loop,
            strategy=distribution.kind,
            loss_scaled=isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer),
            own_train_step=own_train_step(model),
        )
        self.distribution = distribution
        self.model = model
        self.loop = loop
        with distribution.scope():
            self.state = TrainState()
        self._runner: Runner | None = None

    def runner_for(self, dataset_fn: DatasetFn) -> Runner:
        """The runner, built on first use: the model's, metrics' and optimizer's variables
        first (from the data's element spec), then the step and the compiled calls."""
        if self._runner is None:
            build_variables(self.model, self.distribution, dataset_fn)
            self._runner = self._make_runner()
        return self._runner

    def _make_runner(self) -> Runner:
        distribution, loop = self.distribution, self.loop
        local = loop.local_sgd.enabled
        reducer = (
            LocalGradients(distribution.num_replicas)
            if local
            else GradientReducer(loop.communication)
        )
        step = Step(
            model=self.model,
            optimizer=self.model.optimizer,
            reducer=reducer,
            grad_accum_steps=loop.grad_accum_steps,
            metric_state=summed_metrics(self.model, is_async=distribution.is_async),
        )
        if distribution.is_async:
            return CoordinatorRunner(distribution, step, loop)
        if local:
            return LocalSGDRunner(distribution, step, loop)
        return SyncRunner(distribution, step, loop)

    @property
    def allreduce_bytes_per_step(self) -> int:
        """Bytes one replica sends into the gradient all-reduce per update (0 for PSS)."""
        return self._runner.allreduce_bytes_per_step if self._runner else 0

    def fit(
        self,
        train_fn: DatasetFn,
        *,
        epochs: int,
        steps_per_epoch: int,
        global_batch_size: int,
        validation_fn: DatasetFn | None = None,
        callbacks: Sequence[keras.callbacks.Callback] = (),
        verbose: int | str = 0,
        validation_freq: int | Collection[int] = 1,
        initial_epoch: int = 0,
    ) -> History:
        """Trains for `epochs` epochs of `steps_per_epoch` steps; returns Keras' History.

        With `loop.checkpoint.model_dir`, a rerun resumes exactly where the last checkpoint
        left off: step, epoch, optimizer state, the epoch's metrics and (sync strategies)
        the position in the data, even in the middle of an epoch. SIGTERM saves at a step
        all workers agree on and raises `Preempted`; a NaN/inf loss raises
        `TrainingDiverged` before anything is saved. A callback that sets
        `model.stop_training` (EarlyStopping) ends the run, on every worker at once.

        Args:
          train_fn: dataset function of `InputContext`; its dataset must not run out and,
            for an exact resume, must give the same order when built again.
          epochs: the epoch to stop after; a restored run continues from its epoch.
          steps_per_epoch: optimizer steps per epoch (for parameter_server, all workers').
          global_batch_size: examples per micro-batch over all replicas (per worker step
            under parameter_server).
          validation_fn: dataset function read once per validated epoch, or None.
          callbacks: `keras.callbacks.Callback`s (`tfdist.training.callbacks` says which
            run on which task).
          verbose: Keras' `verbose` on this task (`tfdist.fit` shows progress on the chief).
          validation_freq: validate after every this many epochs, or after those listed.
          initial_epoch: epochs already done (0-based, as Keras') when nothing is restored.
        """
        self._check_batch(global_batch_size)
        runner = self.runner_for(train_fn)
        controller = Controller(
            distribution=self.distribution,
            model=self.model,
            runner=runner,
            state=self.state,
            checkpoint=self.loop.checkpoint,
            global_batch_size=global_batch_size,
            grad_accum_steps=self.loop.grad_accum_steps,
        )
        history = History()
        hooks = callback_list(
            check_callbacks(callbacks),
            model=self.model,
            history=history,
            is_chief=self.distribution.role.is_chief,
            verbose=check_verbose(verbose),
            epochs=epochs,
            steps=steps_per_epoch,
        )
        history = controller.fit(
            train_fn,
            callbacks=hooks,
            history=history,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            validation_fn=validation_fn,
            validation_freq=validation_freq,
            initial_epoch=initial_epoch,
        )
        self.model.history = history
        return history

    def _check_batch(self, global_batch_size: int) -> None:
        if isinstance(global_batch_size, bool) or not isinstance(global_batch_size, int):
            raise ConfigError(f"global_batch_size ({global_batch_size!r}) must be an integer.")
        if global_batch_size < 1:
            raise ConfigError(f"global_batch_size ({global_batch_size}) must be at least 1.")
        per_replica_batch_size(global_batch_size, self.distribution.num_replicas)

    def evaluate(self, dataset_fn: DatasetFn) -> dict:
        """Evaluates on every example of `dataset_fn`'s data once; returns the logs.

        Each input pipeline (worker) reads its part once; under `parameter_server` the
        coordinator reads the whole split itself. Returns Keras' `{"loss": ..., ...}`.
        """
        runner = self.runner_for(dataset_fn)
        if self.distribution.is_async:
            dataset = dataset_fn(whole_split_context())
        else:
            _, dataset = make_inputs(self.distribution, None, dataset_fn)
        logs: dict = pythonify_logs(runner.evaluate(dataset))
        return logs
