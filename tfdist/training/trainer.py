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
from typing import Any

import keras
import tensorflow as tf
from keras.src.trainers.data_adapters.data_adapter_utils import unpack_x_y_sample_weight
from keras.src.utils.python_utils import pythonify_logs

from tfdist.config import (
    ConfigError,
    LoopConfig,
    check_count,
    check_loop_fits,
    per_replica_batch_size,
)
from tfdist.data.epochs import EpochPlan, calls
from tfdist.data.pipeline import DatasetFn
from tfdist.data.replica_batches import BATCH, is_metered
from tfdist.distribute.communication import GradientReducer
from tfdist.distribute.strategies import Distribution
from tfdist.training.callbacks import callback_list, check_callbacks, check_verbose
from tfdist.training.controller import Controller, TestHooks, TrainState, Validation
from tfdist.training.history import History
from tfdist.training.inputs import make_inputs, whole_split_context
from tfdist.training.local_sgd import LocalGradients, LocalSGDRunner
from tfdist.training.ps_local_steps import LocalStepsRunner
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
    if is_metered(spec):  # A replica's share: the model sees its rows.
        spec = spec[BATCH]
    with distribution.scope():
        try:
            model._symbolic_build(data_batch=spec)
        except (RuntimeError, ValueError):  # Keras' symbolic build needs call() and y.
            if not own_train_step(model):
                raise
            _build_through_train_step(model, distribution.strategy, spec)
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)


def _build_through_train_step(model: keras.Model, strategy: Any, spec: Any) -> None:
    """Builds a model that only its own `train_step` can build (keras-io's VAE: no `call()`),
    as Keras' one-device fit does when it first traces that step; the step is only traced,
    so no weight moves and no metric counts.

    Symbolically first, as Keras' `_symbolic_build` does (a mirrored variable cannot be
    made while a `tf.function` traces a replica's step); where the step needs real
    variables there (a gradient tape on one device), by tracing it in a `tf.function`.
    """
    from keras.src import backend

    def replica_step(batch: Any) -> Any:
        return strategy.run(model.train_step, args=(batch,))

    try:
        data = tf.nest.map_structure(lambda s: keras.KerasTensor(s.shape, s.dtype), spec)
        backend.compute_output_spec(replica_step, data)
    except (AttributeError, TypeError, ValueError):
        tf.function(replica_step).get_concrete_function(spec)
    model.built = True


def input_spec(dataset_fn: DatasetFn) -> Any:
    """The spec of the model's inputs (`x`) in `dataset_fn`'s batches."""
    spec = dataset_fn(whole_split_context()).element_spec
    if is_metered(spec):
        spec = spec[BATCH]
    return unpack_x_y_sample_weight(spec)[0]


def build_model_variables(model: keras.Model, distribution: Distribution, x_spec: Any) -> None:
    """Builds an unbuilt model's own variables in scope from its inputs' spec, symbolically
    (as Keras' predict builds it on its first batch): no targets, so no metrics."""
    if model.built:
        return
    inputs = tf.nest.map_structure(lambda s: keras.KerasTensor(s.shape, s.dtype), x_spec)
    with distribution.scope():
        model(inputs)


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
        if distribution.is_async and local:
            return LocalStepsRunner(distribution, step, loop)
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
        global_batch_size: int,
        steps_per_epoch: int | None = None,
        plan: EpochPlan | None = None,
        validation_fn: DatasetFn | Validation | None = None,
        callbacks: Sequence[keras.callbacks.Callback] = (),
        verbose: int | str = 0,
        validation_freq: int | Collection[int] = 1,
        initial_epoch: int = 0,
    ) -> History:
        """Trains until epoch `epochs`; returns Keras' History with tfdist's record.

        With `loop.checkpoint.model_dir`, a rerun resumes exactly where the last checkpoint
        left off: step, epoch, optimizer state, the epoch's metrics and (sync strategies)
        the position in the data, even in the middle of an epoch. SIGTERM saves at a step
        all workers agree on and raises `Preempted`; a NaN/inf loss raises
        `TrainingDiverged` before anything is saved. A callback that sets
        `model.stop_training` (EarlyStopping) ends the run, on every worker at once.

        Args:
          train_fn: dataset function of `InputContext`; for an exact resume it must give
            the same order when built again. Its dataset must not run out, unless `plan`
            says how long it is.
          epochs: the epoch to stop after; a restored run continues from its epoch.
          global_batch_size: examples per micro-batch over all replicas (per worker step
            under parameter_server).
          steps_per_epoch: optimizer steps per epoch (for parameter_server, all workers');
            or `plan`, the steps of each epoch (`tfdist.data.epochs.EpochPlan`).
          validation_fn: a dataset function read once per validated epoch (each worker its
            part, in one call), or a `Validation` (Keras' test hooks per call), or None.
          callbacks: `keras.callbacks.Callback`s (`tfdist.training.callbacks` says which
            run on which task).
          verbose: Keras' `verbose` on this task (`tfdist.fit` shows progress on the chief).
          validation_freq: validate after every this many epochs, or after those listed.
          initial_epoch: epochs already done (0-based, as Keras') when nothing is restored.
        """
        if plan is None:
            if steps_per_epoch is None:
                raise ConfigError(
                    "Trainer.fit needs steps_per_epoch (its dataset repeats) or a plan."
                )
            plan = EpochPlan(None, check_count("steps_per_epoch", steps_per_epoch), endless=True)
        if not getattr(train_fn, "metered", False):
            self._check_batch(global_batch_size)
        if isinstance(validation_fn, Validation) or validation_fn is None:
            validation = validation_fn
        else:
            validation = Validation(fn=validation_fn)
        runner = self.runner_for(train_fn)
        controller = self._controller(runner, global_batch_size)
        history = History()
        hooks = callback_list(
            check_callbacks(callbacks),
            model=self.model,
            history=history,
            is_chief=self.distribution.role.is_chief,
            verbose=check_verbose(verbose),
            epochs=epochs,
            steps=plan.params_steps,
        )
        history = controller.fit(
            train_fn,
            callbacks=hooks,
            history=history,
            epochs=epochs,
            plan=plan,
            validation=validation,
            validation_freq=validation_freq,
            initial_epoch=initial_epoch,
        )
        self.model.history = history
        return history

    def _controller(self, runner: Runner, global_batch_size: int) -> Controller:
        return Controller(
            distribution=self.distribution,
            model=self.model,
            runner=runner,
            state=self.state,
            checkpoint=self.loop.checkpoint,
            global_batch_size=global_batch_size,
            grad_accum_steps=self.loop.grad_accum_steps,
            steps_per_execution=self.loop.steps_per_loop,
        )

    def _check_batch(self, global_batch_size: int) -> None:
        if isinstance(global_batch_size, bool) or not isinstance(global_batch_size, int):
            raise ConfigError(f"global_batch_size ({global_batch_size!r}) must be an integer.")
        if global_batch_size < 1:
            raise ConfigError(f"global_batch_size ({global_batch_size}) must be at least 1.")
        per_replica_batch_size(global_batch_size, self.distribution.num_replicas)

    def evaluate(
        self,
        dataset_fn: DatasetFn,
        *,
        steps: int | None = None,
        callbacks: Sequence[keras.callbacks.Callback] = (),
        verbose: int | str = 0,
        steps_per_execution: int | None = None,
    ) -> dict:
        """Evaluates every example of `dataset_fn`'s data once; returns Keras' logs.

        Keras' test hooks run on `callbacks`: per compiled call of `steps_per_execution`
        (by default the loop's `steps_per_loop`) batches when `dataset_fn` shares Keras'
        batches among the replicas (`tfdist.fit`'s inputs; `steps` of them, or until they
        end), else once around the whole data
        (each worker reading its part). Under `parameter_server` the coordinator reads
        the whole data itself.
        """
        runner = self.runner_for(dataset_fn)
        if self.distribution.is_async:
            dataset = dataset_fn(whole_split_context())
        else:
            _, dataset = make_inputs(self.distribution, None, dataset_fn)
        hooks = callback_list(
            check_callbacks(callbacks),
            model=self.model,
            history=None,
            is_chief=self.distribution.role.is_chief,
            verbose=check_verbose(verbose),
            epochs=1,
            steps=steps,
        )
        test_hooks = TestHooks(hooks)
        hooks.on_test_begin()
        if not getattr(dataset_fn, "metered", False) and not self.distribution.is_async:
            logs = runner.evaluate(dataset, test_hooks, None, whole=True)
        else:
            pace = steps_per_execution or self.loop.steps_per_loop
            planned = None if steps is None else calls(0, steps, pace)
            logs = runner.evaluate(dataset, test_hooks, planned, steps_per_call=pace)
        result: dict = pythonify_logs(logs)
        hooks.on_test_end(result)
        return result
