"""Trainer: one custom training loop for Keras 3 models under every strategy.

Owns the inner step (forward pass, loss averaged over the global batch,
gradients, optimizer update) compiled once into a ``tf.function`` that runs
``steps_per_loop`` steps per call, and the outer loop (epochs, validation,
checkpoints, history). Sync strategies run the step with ``strategy.run`` and
the Keras optimizer all-reduces the gradients; ``parameter_server`` schedules
the same step on the workers with ``ClusterCoordinator.schedule`` and the
updates land on the parameter servers. Loss and accuracy are summed on each
replica and aggregated across replicas and workers after each loop; each loop
and epoch is reported to the ``callbacks`` (``tfdist.training.callbacks``), and Keras
``metrics`` are updated in the replica step (sync strategies).

Building the strategy, the data and the model belongs to ``strategies``,
``data`` and ``models``: the trainer receives them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, List, Optional, Sequence, Union

import keras
import tensorflow as tf

from tfdist.training.callbacks import Callback, CallbackList
from tfdist.training.checkpoints import CheckpointKeeper, export_model
from tfdist.distribute.communication import CommunicationConfig, GradientReducer
from tfdist.config import ConfigError, LocalSGDConfig, check_positive, per_replica_batch_size
from tfdist.data.pipeline import DatasetFn, per_worker_dataset_fn
from tfdist.training.history import EpochLog, History, TrainingDiverged
from tfdist.training.local_sgd import LocalSGD, check_local_sgd
from tfdist.optimizers import build_optimizer
from tfdist.training.preemption import Preempted, PreemptionWatcher
from tfdist.distribute.coordinator import fetch_result
from tfdist.training.step import TOTALS, LossFn, StepFunctions, sparse_categorical_loss
from tfdist.distribute.strategies import Distribution

_TOTALS = TOTALS


def _ratio(numerator: float, denominator: float) -> Optional[float]:
    return float(numerator / denominator) if denominator else None


def _scalar(value) -> float:
    return float(tf.convert_to_tensor(value))  # A distributed variable reads as a tensor.


class Trainer:
    """Trains a Keras 3 model built under ``distribution.strategy.scope()``.

    Under the ``mixed_float16`` Keras policy the optimizer is wrapped in a
    ``LossScaleOptimizer`` (dynamic loss scaling); model outputs are cast to float32
    before the loss.

    Args:
      distribution: from ``tfdist.make_strategy``.
      model: a Keras 3 model whose variables were created in the strategy's scope.
      optimizer: ``sgd``, ``adam``, ``rmsprop`` or a Keras optimizer created in scope.
      learning_rate: used when ``optimizer`` is a name.
      loss: ``loss(labels, outputs)`` returning one loss per example; default
        sparse categorical cross-entropy from logits.
      global_batch_size: examples per update over all replicas (per worker step for
        ``parameter_server``); the loss is averaged over it.
      steps_per_loop: steps run inside one ``tf.function`` call.
      accuracy: also count argmax accuracy (outputs are class scores, labels ints).
      grad_accum_steps: micro-batches of ``global_batch_size`` summed into each update;
        an update then covers ``grad_accum_steps * global_batch_size`` examples and
        the all-reduce runs once per update.
      communication: gradient compression and collective options (sync strategies).
      metrics: Keras metrics created in the strategy's scope, updated with
        ``(labels, outputs)`` of every training batch and reset each epoch (sync
        strategies only); their results are ``EpochLog.metrics``.
      callbacks: ``tfdist.training.callbacks.Callback`` objects, called on every task.
      log: called with each EpochLog on the chief; None for silence.
      sync_every: local SGD (``mirrored``, ``multi_worker``): each replica takes this
        many optimizer steps on its own batches, without a gradient all-reduce, then
        the replicas average their weights in one all-reduce (and at the end of each
        epoch); optimizer slots are averaged at the end of each loop segment. 1 is
        synchronous training. See ``tfdist.training.local_sgd``.
      outer_optimizer: ``none``, ``sgd`` or ``nesterov``: the DiLoCo outer step applied
        at each synchronisation, with ``outer_learning_rate`` and ``outer_momentum``.
    """

    def __init__(self, distribution: Distribution, *, model: keras.Model,
                 optimizer: Union[str, keras.optimizers.Optimizer] = "adam",
                 learning_rate: float = 1e-3, loss: Optional[LossFn] = None,
                 global_batch_size: int, steps_per_loop: int = 32, accuracy: bool = True,
                 grad_accum_steps: int = 1,
                 communication: Optional[CommunicationConfig] = None,
                 metrics: Sequence[keras.metrics.Metric] = (),
                 callbacks: Sequence[Callback] = (),
                 log: Optional[Callable[[EpochLog], None]] = None,
                 sync_every: int = 1, outer_optimizer: str = "none",
                 outer_learning_rate: float = 0.7, outer_momentum: float = 0.9):
        check_positive("global_batch_size", global_batch_size)
        check_positive("steps_per_loop", steps_per_loop)
        check_positive("grad_accum_steps", grad_accum_steps)
        per_replica_batch_size(global_batch_size, distribution.num_replicas)
        communication = communication or CommunicationConfig()
        if distribution.is_async and communication.grad_compression != "none":
            raise ConfigError(
                f"grad_compression ({communication.grad_compression!r}) compresses the "
                "all-reduce of sync strategies; parameter_server has none. Drop it or use "
                "--strategy=multi_worker.")
        self.distribution = distribution
        self.model = model
        self.global_batch_size = global_batch_size
        self.steps_per_loop = steps_per_loop
        self.grad_accum_steps = grad_accum_steps
        if metrics and distribution.is_async:
            raise ConfigError(
                f"metrics ({[m.name for m in metrics]}) are updated in the replica step of "
                "sync strategies only; drop them or use --strategy=multi_worker.")
        self.metrics = tuple(metrics)
        self.callbacks = tuple(callbacks)
        self._log = log if distribution.role.is_chief else None
        strategy = distribution.strategy
        with strategy.scope():
            if isinstance(optimizer, str):
                optimizer = build_optimizer(optimizer, learning_rate=learning_rate)
            if (keras.mixed_precision.global_policy().name == "mixed_float16"
                    and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)):
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            self.optimizer = optimizer
            self.optimizer.build(model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            # Counted here, not by optimizer.iterations: Keras 3's assign_add is a read then
            # a write, so under parameter_server concurrent workers lose increments.
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            if not distribution.is_async:
                self._train_totals = self._totals_variable("train_totals")
                self._val_totals = self._totals_variable("val_totals")
        self.local_sgd = self._make_local_sgd(
            LocalSGDConfig(sync_every=sync_every, outer_optimizer=outer_optimizer,
                           outer_learning_rate=outer_learning_rate,
                           outer_momentum=outer_momentum), communication)
        state = self.local_sgd.state if self.local_sgd else None
        extra = {"local_sgd": state} if state is not None else {}
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=self.optimizer,
                                              epoch=self.epoch, step=self.step, **extra)
        self.reducer = GradientReducer(communication)
        self.steps = StepFunctions(
            strategy=strategy, model=model, optimizer=self.optimizer,
            loss=loss or sparse_categorical_loss, global_batch_size=global_batch_size,
            grad_accum_steps=grad_accum_steps,
            reducer=self.local_sgd.reducer if self.local_sgd else self.reducer,
            accuracy=accuracy, metrics=self.metrics)
        self._accuracy = accuracy
        if distribution.is_async:
            self._train_loop = tf.function(self.steps.async_loop)
            self._eval_loop = tf.function(self.steps.local_eval)
        else:
            self._train_loop = tf.function(
                lambda iterator, n: self.steps.sync_loop(iterator, n, self._train_totals))
            self._eval_loop = tf.function(
                lambda dataset: self.steps.sync_eval(dataset, self._val_totals))
        if self.local_sgd:  # Local steps, the replicas averaged every sync_every steps.
            self._train_loop = tf.function(lambda iterator, n: self.local_sgd.loop(
                self.steps, iterator, n, self._train_totals))

    def _make_local_sgd(self, config: LocalSGDConfig, communication) -> Optional[LocalSGD]:
        if not config.enabled:
            return None
        check_local_sgd(config, is_async=self.distribution.is_async, optimizer=self.optimizer,
                        grad_compression=communication.grad_compression)
        with self.distribution.strategy.scope():
            return LocalSGD(config, strategy=self.distribution.strategy, model=self.model,
                            optimizer=self.optimizer, communication=communication)

    @property
    def allreduce_bytes_per_step(self) -> int:
        """Bytes one replica sends into the gradient all-reduce per update (0 for PSS)."""
        return 0 if self.distribution.is_async else self.reducer.bytes_per_step

    @staticmethod
    def _totals_variable(name: str) -> tf.Variable:
        return tf.Variable(tf.zeros([_TOTALS]), trainable=False, name=name,
                           synchronization=tf.VariableSynchronization.ON_READ,
                           aggregation=tf.VariableAggregation.SUM)

    # ----- one epoch --------------------------------------------------------------------
    def _segments(self, first_step: int, steps: int, every: Optional[int]) -> List[List[int]]:
        """Loop-call sizes for ``steps`` steps from ``first_step``, grouped into segments.

        A segment ends at each multiple of ``every`` (a checkpoint) and at the end; its
        loop calls have at most ``steps_per_loop`` steps. Sync strategies check for
        preemption after every call, so each call is its own segment there.
        """
        if self.local_sgd:  # Segments end where the replicas agree.
            return self.local_sgd.segments(first_step, steps, every, self.steps_per_loop)
        segments, step, last = [], first_step, first_step + steps
        while step < last:
            stop = last if not every else min(last, (step // every + 1) * every)
            full, rest = divmod(stop - step, self.steps_per_loop)
            calls = [self.steps_per_loop] * full + ([rest] if rest else [])
            segments.extend([[c] for c in calls] if not self.distribution.is_async else [calls])
            step = stop
        return segments

    def _run_segment_sync(self, iterator, sizes, hooks: CallbackList) -> tf.Tensor:
        for size in sizes:
            hooks.loop_begin(size)
            self._train_loop(iterator, tf.constant(size))
            # Every task reads (a collective under multi_worker), callbacks or not.
            totals = tf.convert_to_tensor(self._train_totals)
            hooks.loop_end(size, totals)
        return totals

    def _run_segment_async(self, iterator, sizes, hooks: CallbackList, before) -> tf.Tensor:
        coordinator = self.distribution.coordinator
        results = []
        for size in sizes:
            hooks.loop_begin(size)
            results.append(coordinator.schedule(self._train_loop,
                                                args=(iterator, tf.constant(size))))
        totals = before
        for size, result in zip(sizes, results):  # In order, as each loop's result comes in.
            totals += tf.convert_to_tensor(fetch_result(coordinator, result))
            hooks.loop_end(size, totals)
        coordinator.join()
        return totals

    def _train_epoch(self, iterator, epoch: int, steps: int, run: "_Run") -> tf.Tensor:
        """Trains ``steps`` steps of ``epoch``; checkpoints and stops as ``run`` says."""
        totals = tf.zeros([_TOTALS])
        if not self.distribution.is_async:
            self._train_totals.assign(totals)
        for sizes in self._segments(int(self.step.numpy()), steps, run.every):
            if self.distribution.is_async:
                totals = self._run_segment_async(iterator, sizes, run.hooks, totals)
            else:
                totals = self._run_segment_sync(iterator, sizes, run.hooks)
            self.step.assign_add(sum(sizes))
            step = int(self.step.numpy())
            if self.local_sgd:
                self.local_sgd.settle(step)
            if not math.isfinite(float(totals[0])):
                raise TrainingDiverged(step, epoch, run.keeper.latest if run.keeper else None)
            at_boundary = run.every and step % run.every == 0
            preempted = run.watcher.agreed()
            if run.keeper and (at_boundary or preempted):
                run.keeper.save(step)
            if preempted:
                raise Preempted(step, run.keeper.latest if run.keeper else None)
        return totals

    def _evaluate(self, dataset) -> tf.Tensor:
        if self.distribution.is_async:
            return self._eval_loop(dataset)
        self._val_totals.assign(tf.zeros([_TOTALS]))
        self._eval_loop(dataset)
        return tf.convert_to_tensor(self._val_totals)

    def _make_inputs(self, train_fn: DatasetFn, validation_fn: Optional[DatasetFn]):
        strategy = self.distribution.strategy
        if self.distribution.is_async:
            coordinator = self.distribution.coordinator
            train = iter(coordinator.create_per_worker_dataset(
                per_worker_dataset_fn(train_fn, num_workers=self.distribution.num_workers)))
            validation = validation_fn(None) if validation_fn else None
            return train, validation
        train_fn = _skipping(train_fn, int(self.step.numpy()) * self.grad_accum_steps)
        direct = self.distribution.direct_input_context()
        if direct is not None:  # One CPU replica: its own dataset, no distributed iterator.
            return (iter(train_fn(direct)),
                    validation_fn(direct) if validation_fn else None)
        train = iter(strategy.distribute_datasets_from_function(train_fn))
        validation = (strategy.distribute_datasets_from_function(validation_fn)
                      if validation_fn else None)
        return train, validation

    # ----- the outer loop ---------------------------------------------------------------
    def fit(self, train_fn: DatasetFn, *, epochs: int, steps_per_epoch: int,
            validation_fn: Optional[DatasetFn] = None, model_dir: Optional[str] = None,
            export: bool = True, checkpoint_every_steps: Optional[int] = None,
            keep_checkpoints: int = 3) -> History:
        """Trains for ``epochs`` epochs of ``steps_per_epoch`` steps.

        With ``model_dir``, a rerun resumes exactly where the last checkpoint left off:
        step, epoch, optimizer state and (sync strategies) the position in the data,
        even in the middle of an epoch. SIGTERM saves a checkpoint at a step all workers
        agree on and raises ``Preempted``; a NaN/inf loss raises ``TrainingDiverged``
        before anything is saved, so the last good checkpoint stays the newest.

        Args:
          train_fn: dataset function of ``InputContext``; its dataset must not run out
            and, for an exact resume, must give the same order when built again.
          epochs: the epoch to stop after; a restored run continues from its epoch.
          steps_per_epoch: optimizer steps per epoch (per worker step for PSS, all workers).
          validation_fn: dataset function read once per epoch, or None.
          model_dir: checkpoints and resume; None keeps nothing.
          export: with ``model_dir``, the chief writes ``model_dir/model.keras`` at the end.
          checkpoint_every_steps: also checkpoint every this many steps (epoch ends always).
          keep_checkpoints: the newest checkpoints kept.

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
            keeper = CheckpointKeeper(self.checkpoint, model_dir=model_dir,
                                      role=self.distribution.role, max_to_keep=keep_checkpoints)
            history.restored_from = keeper.restore_latest()
        if self.local_sgd:
            self.local_sgd.start(int(self.step.numpy()))
        first_epoch = int(self.epoch.numpy()) + 1
        done_in_epoch = int(self.step.numpy()) - (first_epoch - 1) * steps_per_epoch
        train, validation = self._make_inputs(train_fn, validation_fn)
        hooks = CallbackList(self.callbacks)
        hooks.fit_begin(epochs=epochs, steps_per_epoch=steps_per_epoch,
                        initial_epoch=first_epoch - 1, initial_step=int(self.step.numpy()))
        watcher = PreemptionWatcher(
            self.distribution.strategy,
            sync_workers=not self.distribution.is_async and self.distribution.num_workers > 1)
        run = _Run(keeper=keeper, every=checkpoint_every_steps, hooks=hooks, watcher=watcher)
        with watcher:
            for epoch in range(first_epoch, epochs + 1):
                steps = steps_per_epoch - max(0, done_in_epoch)
                done_in_epoch = 0
                started = time.perf_counter()
                hooks.epoch_begin(epoch)
                for metric in self.metrics:
                    metric.reset_state()
                train_totals = self._traced(self._train_epoch, train, epoch, steps, run).numpy()
                seconds = time.perf_counter() - started
                val_totals = (self._traced(self._evaluate, validation).numpy()
                              if validation is not None else None)
                log = self._epoch_log(epoch, steps, train_totals, val_totals, seconds,
                                      wall_seconds=hooks.wall_seconds)
                history.epochs.append(log)
                self.epoch.assign(epoch)
                if keeper:
                    keeper.save(log.global_step)
                if self._log:
                    self._log(log)
                hooks.epoch_end(log)
        history.final_step = int(self.step.numpy())
        hooks.fit_end(history)
        if keeper:
            keeper.close()
        if model_dir and export and self.distribution.role.is_chief:
            export_model(self.model, model_dir)
        return history

    def _traced(self, function, *args):
        """Calls ``function``, turning a user mistake found while tracing into ConfigError."""
        try:
            return function(*args)
        except Exception:
            if self.steps.trace_problem:
                raise ConfigError(self.steps.trace_problem) from None
            raise

    def _epoch_log(self, epoch, steps, train_totals, val_totals, seconds,
                   wall_seconds) -> EpochLog:
        loss_sum, correct, count = (float(v) for v in train_totals)
        val_loss = val_accuracy = None
        if val_totals is not None:
            val_loss = _ratio(val_totals[0], val_totals[2])
            val_accuracy = _ratio(val_totals[1], val_totals[2]) if self._accuracy else None
        return EpochLog(
            epoch=epoch, steps=steps, train_loss=loss_sum / count,
            train_accuracy=correct / count if self._accuracy else None,
            val_loss=val_loss, val_accuracy=val_accuracy, train_seconds=seconds,
            examples=int(count), global_step=int(self.step.numpy()),
            wall_seconds=wall_seconds, learning_rate=_scalar(self.optimizer.learning_rate),
            metrics={m.name: float(m.result()) for m in self.metrics})


@dataclasses.dataclass
class _Run:
    """What the epochs of one ``fit`` share."""

    keeper: Optional[CheckpointKeeper]
    every: Optional[int]
    hooks: CallbackList
    watcher: PreemptionWatcher


def _skipping(train_fn: DatasetFn, micro_steps: int) -> DatasetFn:
    """``train_fn`` with the batches of ``micro_steps`` steps already consumed skipped."""
    if not micro_steps:
        return train_fn

    def resumed(context):
        per_pipeline = context.num_replicas_in_sync // context.num_input_pipelines
        return train_fn(context).skip(micro_steps * per_pipeline)

    return resumed
