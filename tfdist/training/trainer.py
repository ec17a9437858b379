"""Trainer: one custom training loop for Keras 3 models under every strategy.

Owns the inner step (forward pass, loss averaged over the global batch,
gradients, optimizer update) compiled once into a `tf.function` that runs
`steps_per_loop` steps per call, and the outer loop (epochs, validation,
checkpoints, history). Sync strategies run the step with `strategy.run` and
the Keras optimizer all-reduces the gradients; `parameter_server` schedules
the same step on the workers with `ClusterCoordinator.schedule` and the
updates land on the parameter servers. Loss and accuracy are summed on each
replica and aggregated across replicas and workers after each loop; each loop
and epoch is reported to the `callbacks` (`tfdist.training.callbacks`), and Keras
`metrics` are updated in the replica step (sync strategies).

A model compiled with `model.compile` (`tfdist.fit`) trains with what compile
set: its optimizer, its loss (`compute_loss`) and its metrics, whose results
are the epoch's `metrics` and `val_metrics`; a model that overrides
`train_step`/`test_step` runs them (sync strategies).

Building the strategy, the data and the model belongs to `strategies`,
`data` and `models`: the trainer receives them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import keras
import tensorflow as tf

from tfdist.config import ConfigError, LocalSGDConfig, check_positive, per_replica_batch_size
from tfdist.data.pipeline import DatasetFn
from tfdist.distribute.communication import CommunicationConfig, GradientReducer
from tfdist.distribute.coordinator import fetch_result
from tfdist.distribute.strategies import Distribution
from tfdist.optimizers import build_optimizer
from tfdist.training.callbacks import Callback, CallbackList
from tfdist.training.checkpoints import CheckpointKeeper, export_model
from tfdist.training.compiled import StopVote, compiled_logs, validates, whole_split_context
from tfdist.training.compiled import check_own_steps as _check_own_steps
from tfdist.training.compiled import overrides_steps as _overrides_steps
from tfdist.training.history import EpochLog, History, TrainingDiverged
from tfdist.training.local_sgd import LocalSGD, check_local_sgd
from tfdist.training.preemption import Preempted, PreemptionWatcher
from tfdist.training.schedule import EpochRun, WorkerSteps, loop_segments, make_inputs
from tfdist.training.step import TOTALS, LossFn, StepFunctions, sparse_categorical_loss


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator else None


def _scalar(value) -> float:
    return float(tf.convert_to_tensor(value))  # A distributed variable reads as a tensor.


class Trainer:
    """Trains a Keras 3 model built under `distribution.strategy.scope()`.

    Under the `mixed_float16` Keras policy the optimizer is wrapped in a
    `LossScaleOptimizer` (dynamic loss scaling); model outputs are cast to float32
    before the loss.

    Args:
      distribution: from `tfdist.make_strategy`.
      model: a Keras 3 model whose variables were created in the strategy's scope.
        A model compiled in scope (`model.compile`) with no `loss` given here
        trains with its compiled optimizer, loss and metrics.
      optimizer: `sgd`, `adam`, `rmsprop` or a Keras optimizer created in scope;
        None: the compiled model's optimizer, else `adam`.
      learning_rate: used when `optimizer` is a name.
      loss: `loss(labels, outputs)` returning one loss per example; default: the
        compiled model's loss, else sparse categorical cross-entropy from logits.
      global_batch_size: examples per update over all replicas (per worker step for
        `parameter_server`); the loss is averaged over it.
      steps_per_loop: steps run inside one `tf.function` call.
      accuracy: also count argmax accuracy (outputs are class scores, labels ints).
      grad_accum_steps: micro-batches of `global_batch_size` summed into each update;
        an update then covers `grad_accum_steps * global_batch_size` examples and
        the all-reduce runs once per update.
      communication: gradient compression and collective options (sync strategies).
      metrics: Keras metrics created in the strategy's scope, updated with
        `(labels, outputs)` of every training batch and reset each epoch (sync
        strategies only); their results are `EpochLog.metrics`.
      callbacks: `tfdist.training.callbacks.Callback` objects, called on every task.
      sync_every: local SGD (`mirrored`, `multi_worker`): each replica takes this
        many optimizer steps on its own batches, without a gradient all-reduce, then
        the replicas average their weights in one all-reduce (and at the end of each
        epoch); optimizer slots are averaged at the end of each loop segment. 1 is
        synchronous training. See `tfdist.training.local_sgd`.
      outer_optimizer: `none`, `sgd` or `nesterov`: the DiLoCo outer step applied
        at each synchronisation, with `outer_learning_rate` and `outer_momentum`.
    """

    def __init__(
        self,
        distribution: Distribution,
        *,
        model: keras.Model,
        optimizer: str | keras.optimizers.Optimizer | None = None,
        learning_rate: float = 1e-3,
        loss: LossFn | None = None,
        global_batch_size: int,
        steps_per_loop: int = 32,
        accuracy: bool = True,
        grad_accum_steps: int = 1,
        communication: CommunicationConfig | None = None,
        metrics: Sequence[keras.metrics.Metric] = (),
        callbacks: Sequence[Callback] = (),
        sync_every: int = 1,
        outer_optimizer: str = "none",
        outer_learning_rate: float = 0.7,
        outer_momentum: float = 0.9,
    ):
        check_positive("global_batch_size", global_batch_size)
        check_positive("steps_per_loop", steps_per_loop)
        check_positive("grad_accum_steps", grad_accum_steps)
        per_replica_batch_size(global_batch_size, distribution.num_replicas)
        communication = communication or CommunicationConfig()
        if distribution.is_async and communication.grad_compression != "none":
            raise ConfigError(
                f"grad_compression ({communication.grad_compression!r}) compresses the "
                "all-reduce of sync strategies; parameter_server has none. Drop it or use "
                "strategy='multi_worker'."
            )
        self.distribution = distribution
        self.model = model
        self.global_batch_size = global_batch_size
        self.steps_per_loop = steps_per_loop
        self.grad_accum_steps = grad_accum_steps
        if metrics and distribution.is_async:
            raise ConfigError(
                f"metrics ({[m.name for m in metrics]}) are updated in the replica step of "
                "sync strategies only; drop them or use strategy='multi_worker'."
            )
        self.metrics = tuple(metrics)
        self.callbacks = tuple(callbacks)
        self.compiled = bool(getattr(model, "compiled", False)) and loss is None
        own_steps = self.compiled and _overrides_steps(model)
        if own_steps:
            _check_own_steps(model, distribution, grad_accum_steps, communication)
        if self.compiled:
            accuracy = False  # The compiled metrics say what to measure.
            optimizer = model.optimizer if optimizer is None else optimizer
        strategy = distribution.strategy
        with strategy.scope():
            if optimizer is None:
                optimizer = "adam"
            if isinstance(optimizer, str):
                optimizer = build_optimizer(optimizer, learning_rate=learning_rate)
            if keras.mixed_precision.global_policy().name == "mixed_float16" and not isinstance(
                optimizer, keras.optimizers.LossScaleOptimizer
            ):
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            self.optimizer = optimizer
            if not self.optimizer.built:
                self.optimizer.build(model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            # Counted here, not by optimizer.iterations: Keras 3's assign_add is a read then
            # a write, so under parameter_server concurrent workers lose increments.
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            # The running totals of the epoch in progress, so a resumed epoch reports all
            # of its steps (and one resumed at its last step reports any at all).
            self.epoch_totals = tf.Variable(
                tf.zeros([TOTALS]), trainable=False, name="epoch_totals"
            )
            if not distribution.is_async:
                self._train_totals = self._totals_variable("train_totals")
                self._val_totals = self._totals_variable("val_totals")
            # Under parameter_server, how many of the steps each worker ran.
            self.worker_steps = (
                WorkerSteps(distribution.num_workers) if distribution.is_async else None
            )
        self.local_sgd = self._make_local_sgd(
            LocalSGDConfig(
                sync_every=sync_every,
                outer_optimizer=outer_optimizer,
                outer_learning_rate=outer_learning_rate,
                outer_momentum=outer_momentum,
            ),
            communication,
        )
        state = self.local_sgd.state if self.local_sgd else None
        extra = {"local_sgd": state} if state is not None else {}
        if self.worker_steps is not None:
            extra["worker_steps"] = self.worker_steps.variable
        self.checkpoint = tf.train.Checkpoint(
            model=model,
            optimizer=self.optimizer,
            epoch=self.epoch,
            step=self.step,
            epoch_totals=self.epoch_totals,
            **extra,
        )
        self.reducer = GradientReducer(communication)
        self.steps = StepFunctions(
            strategy=strategy,
            model=model,
            optimizer=self.optimizer,
            loss=None if self.compiled else (loss or sparse_categorical_loss),
            global_batch_size=global_batch_size,
            grad_accum_steps=grad_accum_steps,
            reducer=self.local_sgd.reducer if self.local_sgd else self.reducer,
            accuracy=accuracy,
            metrics=self.metrics,
            compiled=self.compiled,
            own_steps=own_steps,
        )
        self._accuracy = accuracy
        self._stop_vote = StopVote(distribution)
        self._held_metric_changes = None  # PSS: loops' metric changes not yet on the ps.
        # Under multi_worker a metric read is a collective: compiled once, not run eagerly.
        self._read_metrics = (
            tf.function(model.get_metrics_result)
            if distribution.num_workers > 1 and not distribution.is_async
            else model.get_metrics_result
        )
        if distribution.is_async:
            self._train_loop = tf.function(self.steps.async_loop)
            self._eval_loop = tf.function(self.steps.local_eval)
        else:
            self._train_loop = tf.function(
                lambda iterator, n: self.steps.sync_loop(iterator, n, self._train_totals)
            )
            self._eval_loop = tf.function(
                lambda dataset: self.steps.sync_eval(dataset, self._val_totals)
            )
        if self.local_sgd:  # Local steps, the replicas averaged every sync_every steps.
            self._train_loop = tf.function(
                lambda iterator, n: self.local_sgd.loop(self.steps, iterator, n, self._train_totals)
            )

    def _make_local_sgd(self, config: LocalSGDConfig, communication) -> LocalSGD | None:
        if not config.enabled:
            return None
        check_local_sgd(
            config,
            is_async=self.distribution.is_async,
            optimizer=self.optimizer,
            grad_compression=communication.grad_compression,
        )
        with self.distribution.strategy.scope():
            return LocalSGD(
                config,
                strategy=self.distribution.strategy,
                model=self.model,
                optimizer=self.optimizer,
                communication=communication,
            )

    @property
    def allreduce_bytes_per_step(self) -> int:
        """Bytes one replica sends into the gradient all-reduce per update (0 for PSS)."""
        return 0 if self.distribution.is_async else self.reducer.bytes_per_step

    @staticmethod
    def _totals_variable(name: str) -> tf.Variable:
        return tf.Variable(
            tf.zeros([TOTALS]),
            trainable=False,
            name=name,
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.SUM,
        )

    # ----- one epoch --------------------------------------------------------------------
    def _segments(self, first_step: int, steps: int, every: int | None) -> list:
        if self.local_sgd:  # Segments end where the replicas agree.
            return self.local_sgd.segments(first_step, steps, every, self.steps_per_loop)
        is_async = self.distribution.is_async
        return loop_segments(
            first_step,
            steps,
            every=every,
            steps_per_loop=self.steps_per_loop,
            one_call_each=not is_async,
            free_workers=self.distribution.num_workers if is_async else 0,
        )

    def _run_segment_sync(self, iterator, sizes, hooks: CallbackList, prior) -> tf.Tensor:
        for size in sizes:
            hooks.loop_begin(size)
            self._train_loop(iterator, tf.constant(size))
            # Every task reads (a collective under multi_worker), callbacks or not.
            totals = prior + tf.convert_to_tensor(self._train_totals)
            hooks.loop_end(size, totals, self._batch_logs)
        return totals

    def _run_segment_async(self, iterator, sizes, hooks: CallbackList, before) -> tf.Tensor:
        coordinator = self.distribution.coordinator
        results = []
        for size in sizes:
            hooks.loop_begin(size)
            results.append(
                coordinator.schedule(self._train_loop, args=(iterator, tf.constant(size)))
            )
        totals = before
        tracked = bool(self.steps.async_metric_variables())
        for size, result in zip(
            sizes, results, strict=False
        ):  # In order, as each loop's result comes in.
            fetched = fetch_result(coordinator, result)
            if tracked:
                self._hold_metric_changes(fetched["metrics"])
            self.worker_steps.add(int(fetched["worker"]), size)
            totals += tf.convert_to_tensor(fetched["totals"])
            hooks.loop_end(size, totals, self._batch_logs)
        coordinator.join()
        self._apply_metric_changes()
        self.worker_steps.commit()
        return totals

    def _hold_metric_changes(self, changes) -> None:
        """Adds a loop's metric changes (PSS) to those not yet written to the ps."""
        held = self._held_metric_changes
        self._held_metric_changes = (
            list(changes) if held is None else [a + b for a, b in zip(held, changes, strict=False)]
        )

    def _apply_metric_changes(self) -> None:
        """Writes the held metric changes into the ps variables (the coordinator: the only
        writer), once per segment or when logs read the metrics, not after every loop."""
        held, self._held_metric_changes = self._held_metric_changes, None
        if held is not None:
            for variable, change in zip(self.steps.async_metric_variables(), held, strict=False):
                variable.assign(variable + change)

    def _batch_logs(self, totals) -> dict:
        """The logs Keras callbacks get at a batch's end: the epoch's metrics so far."""
        self._apply_metric_changes()
        if self.compiled:
            return compiled_logs(
                self.model,
                totals,
                read=self._read_metrics,
                loss_from_totals=self.distribution.is_async,
                metrics_updated=bool(self.steps.async_metric_variables())
                or not self.distribution.is_async,
            )
        return {"loss": _ratio(totals[0], totals[2]) or 0.0}

    def _train_epoch(self, iterator, epoch: int, steps: int, run: EpochRun) -> tf.Tensor:
        """Trains `steps` steps of `epoch`; checkpoints and stops as `run` says.

        Starts from the totals of the epoch's steps before a resume (`epoch_totals`).
        """
        prior = tf.convert_to_tensor(self.epoch_totals)
        totals = prior
        if not self.distribution.is_async:
            self._train_totals.assign(tf.zeros([TOTALS]))
        for sizes in self._segments(int(self.step.numpy()), steps, run.every):
            if self.distribution.is_async:
                totals = self._run_segment_async(iterator, sizes, run.hooks, totals)
            else:
                totals = self._run_segment_sync(iterator, sizes, run.hooks, prior)
            self.step.assign_add(sum(sizes))
            self.epoch_totals.assign(totals)
            step = int(self.step.numpy())
            if self.local_sgd:
                self.local_sgd.settle(step)
            if not math.isfinite(float(totals[0])):
                # A callback (Keras' TerminateOnNaN) stopping the run ends it as in Keras.
                if self._stop_vote(bool(getattr(self.model, "stop_training", False))):
                    return totals
                raise TrainingDiverged(step, epoch, run.keeper.latest if run.keeper else None)
            at_boundary = run.every and step % run.every == 0
            preempted = run.watcher.agreed()
            if run.keeper and (at_boundary or preempted):
                run.keeper.save(step)
            if preempted:
                raise Preempted(step, run.keeper.latest if run.keeper else None)
        return totals

    def _evaluate(self, dataset) -> tf.Tensor:
        if self.compiled:
            self.model.reset_metrics()
        if self.distribution.is_async:
            return self._eval_loop(dataset)
        self._val_totals.assign(tf.zeros([TOTALS]))
        self._eval_loop(dataset)
        return tf.convert_to_tensor(self._val_totals)

    def evaluate(self, dataset_fn: DatasetFn) -> dict:
        """Evaluates on every example of `dataset_fn`'s data once; returns the logs.

        Each input pipeline (worker) reads its part once; under `parameter_server` the
        coordinator reads the whole split itself. Returns `{"loss": ..., metric: ...}`.
        """
        if self.distribution.is_async:
            dataset = dataset_fn(whole_split_context())
        else:
            _, dataset = self._make_inputs(None, dataset_fn)
        totals = self._traced(self._evaluate, dataset).numpy()
        return self._eval_logs(totals)

    def _eval_logs(self, totals) -> dict:
        if self.compiled:
            return compiled_logs(self.model, totals, read=self._read_metrics)
        logs = {"loss": _ratio(totals[0], totals[2])}
        if self._accuracy:
            logs["accuracy"] = _ratio(totals[1], totals[2])
        return logs

    def _make_inputs(self, train_fn: DatasetFn | None, validation_fn: DatasetFn | None):
        return make_inputs(
            self.distribution,
            train_fn,
            validation_fn,
            skip_micro_steps=int(self.step.numpy()) * self.grad_accum_steps,
        )

    # ----- the outer loop ---------------------------------------------------------------
    def fit(
        self,
        train_fn: DatasetFn,
        *,
        epochs: int,
        steps_per_epoch: int,
        validation_fn: DatasetFn | None = None,
        model_dir: str | None = None,
        export: bool = True,
        checkpoint_every_steps: int | None = None,
        keep_checkpoints: int = 3,
        validation_freq: int = 1,
        initial_epoch: int = 0,
    ) -> History:
        """Trains for `epochs` epochs of `steps_per_epoch` steps.

        With `model_dir`, a rerun resumes exactly where the last checkpoint left off:
        step, epoch, optimizer state and (sync strategies) the position in the data,
        even in the middle of an epoch. SIGTERM saves a checkpoint at a step all workers
        agree on and raises `Preempted`; a NaN/inf loss raises `TrainingDiverged`
        before anything is saved, so the last good checkpoint stays the newest. A
        callback that sets `model.stop_training` (Keras' `EarlyStopping`) ends the
        run after the epoch, on every worker at once.

        Args:
          train_fn: dataset function of `InputContext`; its dataset must not run out
            and, for an exact resume, must give the same order when built again.
          epochs: the epoch to stop after; a restored run continues from its epoch.
          steps_per_epoch: optimizer steps per epoch (per worker step for PSS, all workers).
          validation_fn: dataset function read once per validated epoch, or None.
          model_dir: checkpoints and resume; None keeps nothing.
          export: with `model_dir`, the chief writes `model_dir/model.keras` at the end.
          checkpoint_every_steps: also checkpoint every this many steps (epoch ends always).
          keep_checkpoints: the newest checkpoints kept.
          validation_freq: validate after every this many epochs (an int), or after the
            epochs listed (a collection of 1-based epoch numbers), as in Keras.
          initial_epoch: epochs already done (0-based, as Keras' `initial_epoch`) when
            no checkpoint is restored.

        Returns:
          The History of the epochs run by this call.
        """
        check_positive("epochs", epochs)
        check_positive("steps_per_epoch", steps_per_epoch)
        check_positive("checkpoint_every_steps", checkpoint_every_steps, allow_none=True)
        check_positive("keep_checkpoints", keep_checkpoints)
        history = History()
        keeper = None
        if model_dir:
            keeper = CheckpointKeeper(
                self.checkpoint,
                model_dir=model_dir,
                role=self.distribution.role,
                max_to_keep=keep_checkpoints,
            )
            history.restored_from = keeper.restore_latest()
        if initial_epoch and not history.restored_from and int(self.epoch.numpy()) == 0:
            self.epoch.assign(initial_epoch)
            self.step.assign(initial_epoch * steps_per_epoch)
        if self.local_sgd:
            self.local_sgd.start(int(self.step.numpy()))
        if self.worker_steps is not None:
            self.worker_steps.start()
        first_epoch = int(self.epoch.numpy()) + 1
        done_in_epoch = int(self.step.numpy()) - (first_epoch - 1) * steps_per_epoch
        train, validation = self._make_inputs(train_fn, validation_fn)
        hooks = CallbackList(self.callbacks)
        hooks.fit_begin(
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            initial_epoch=first_epoch - 1,
            initial_step=int(self.step.numpy()),
        )
        watcher = PreemptionWatcher(
            self.distribution.strategy,
            sync_workers=not self.distribution.is_async and self.distribution.num_workers > 1,
        )
        run = EpochRun(keeper=keeper, every=checkpoint_every_steps, hooks=hooks, watcher=watcher)
        with watcher:
            for epoch in range(first_epoch, epochs + 1):
                log = self._run_epoch(
                    epoch,
                    steps_per_epoch - max(0, done_in_epoch),
                    train,
                    validation if validates(epoch, validation_freq) else None,
                    run,
                )
                done_in_epoch = 0
                history.epochs.append(log)
                if self._stop_vote(bool(getattr(self.model, "stop_training", False))):
                    break
        history.final_step = int(self.step.numpy())
        history.steps_by_worker = (
            self.worker_steps.counts if self.worker_steps is not None else None
        )
        hooks.fit_end(history)
        if keeper:
            keeper.close()
        if model_dir and export and self.distribution.role.is_chief and not run.diverged:
            export_model(self.model, model_dir)
        return history

    def _run_epoch(self, epoch: int, steps: int, train, validation, run: EpochRun) -> EpochLog:
        """One epoch: its remaining `steps`, validation, the epoch-end save, callbacks."""
        started = time.perf_counter()
        run.hooks.epoch_begin(epoch)
        for metric in self.metrics:
            metric.reset_state()
        if self.compiled:
            self.model.reset_metrics()
        train_totals = self._traced(self._train_epoch, train, epoch, steps, run).numpy()
        seconds = time.perf_counter() - started
        train_logs = self._batch_logs(train_totals) if self.compiled else None
        val_logs = None
        if validation is not None:
            val_logs = self._eval_logs(self._traced(self._evaluate, validation).numpy())
        log = self._epoch_log(
            epoch,
            steps,
            train_totals,
            train_logs,
            val_logs,
            seconds,
            wall_seconds=run.hooks.wall_seconds,
        )
        self.epoch.assign(epoch)
        self.epoch_totals.assign(tf.zeros([TOTALS]))
        run.diverged = not math.isfinite(float(train_totals[0]))  # Stopped by TerminateOnNaN.
        if run.keeper and not run.diverged:  # The last good checkpoint stays the newest.
            run.keeper.save(log.global_step)
        run.hooks.epoch_end(log)
        return log

    def _traced(self, function, *args):
        """Calls `function`, turning a user mistake found while tracing into ConfigError."""
        try:
            return function(*args)
        except Exception:
            if self.steps.trace_problem:
                raise ConfigError(self.steps.trace_problem) from None
            raise

    def _epoch_log(
        self, epoch, steps, train_totals, train_logs, val_logs, seconds, wall_seconds
    ) -> EpochLog:
        loss_sum, correct, count = (float(v) for v in train_totals)
        metrics = {m.name: float(m.result()) for m in self.metrics}
        train_loss = _ratio(loss_sum, count)
        if train_logs is not None:
            metrics = {k: v for k, v in train_logs.items() if k != "loss"}
            train_loss = train_logs.get("loss", train_loss)
        val_logs = val_logs or {}
        return EpochLog(
            epoch=epoch,
            steps=steps,
            train_loss=train_loss,
            train_accuracy=_ratio(correct, count) if self._accuracy else None,
            val_loss=val_logs.get("loss"),
            val_accuracy=val_logs.get("accuracy") if self._accuracy else None,
            train_seconds=seconds,
            examples=int(count),
            global_step=int(self.step.numpy()),
            wall_seconds=wall_seconds,
            learning_rate=_scalar(self.optimizer.learning_rate),
            metrics=metrics,
            val_metrics={
                k: v
                for k, v in val_logs.items()
                if k != "loss" and (self.compiled or k != "accuracy")
            },
        )
