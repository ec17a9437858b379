"""Trainer: one custom training loop for Keras 3 models under every strategy.

Owns the inner step (forward pass, loss averaged over the global batch,
gradients, optimizer update) compiled once into a ``tf.function`` that runs
``steps_per_loop`` steps per call, and the outer loop (epochs, validation,
checkpoints, history). Sync strategies run the step with ``strategy.run`` and
the Keras optimizer all-reduces the gradients; ``parameter_server`` schedules
the same step on the workers with ``ClusterCoordinator.schedule`` and the
updates land on the parameter servers. Loss and accuracy are summed on each
replica and aggregated across replicas and workers once per epoch.

Building the strategy, the data and the model belongs to ``strategies``,
``data`` and ``models``: the trainer receives them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, List, Optional, Union

import keras
import tensorflow as tf

from tfdist.checkpoints import CheckpointKeeper, export_model
from tfdist.config import ConfigError, check_positive, per_replica_batch_size
from tfdist.data import DatasetFn
from tfdist.optimizers import build_optimizer
from tfdist.strategies import Distribution

LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
_SUM = tf.distribute.ReduceOp.SUM
# Totals summed per replica: [loss sum, correct predictions, examples].
_TOTALS = 3


@dataclasses.dataclass(frozen=True)
class EpochLog:
    """What one epoch did; accuracies are None when the trainer does not measure them."""

    epoch: int
    steps: int
    train_loss: float
    train_accuracy: Optional[float]
    val_loss: Optional[float]
    val_accuracy: Optional[float]
    train_seconds: float
    examples: int

    @property
    def examples_per_sec(self) -> float:
        return self.examples / self.train_seconds if self.train_seconds > 0 else 0.0


@dataclasses.dataclass
class History:
    """The epochs a ``fit`` ran, in order, and the optimizer step it ended at."""

    epochs: List[EpochLog] = dataclasses.field(default_factory=list)
    final_step: int = 0
    restored_from: Optional[str] = None

    def examples_per_sec(self) -> float:
        """Training throughput after the first epoch (warm-up), or of the only epoch."""
        timed = self.epochs[1:] or self.epochs
        seconds = sum(e.train_seconds for e in timed)
        return sum(e.examples for e in timed) / seconds if seconds > 0 else 0.0

    def as_dicts(self) -> list:
        return [dataclasses.asdict(e) for e in self.epochs]


def sparse_categorical_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per-example cross-entropy of integer labels against logits."""
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def _ratio(numerator: float, denominator: float) -> Optional[float]:
    return float(numerator / denominator) if denominator else None


class Trainer:
    """Trains a Keras 3 model built under ``distribution.strategy.scope()``.

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
      log: called with each EpochLog on the chief; None for silence.
    """

    def __init__(self, distribution: Distribution, *, model: keras.Model,
                 optimizer: Union[str, keras.optimizers.Optimizer] = "adam",
                 learning_rate: float = 1e-3, loss: Optional[LossFn] = None,
                 global_batch_size: int, steps_per_loop: int = 32, accuracy: bool = True,
                 log: Optional[Callable[[EpochLog], None]] = None):
        check_positive("global_batch_size", global_batch_size)
        check_positive("steps_per_loop", steps_per_loop)
        per_replica_batch_size(global_batch_size, distribution.num_replicas)
        self.distribution = distribution
        self.model = model
        self.global_batch_size = global_batch_size
        self.steps_per_loop = steps_per_loop
        self._loss = loss or sparse_categorical_loss
        self._accuracy = accuracy
        self._log = log if distribution.role.is_chief else None
        self._trace_problem = None
        strategy = distribution.strategy
        with strategy.scope():
            if isinstance(optimizer, str):
                optimizer = build_optimizer(optimizer, learning_rate=learning_rate)
            self.optimizer = optimizer
            self.optimizer.build(model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            if not distribution.is_async:
                self._train_totals = self._totals_variable("train_totals")
                self._val_totals = self._totals_variable("val_totals")
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=self.optimizer,
                                              epoch=self.epoch)
        self._train_loop = tf.function(self._sync_loop if not distribution.is_async
                                       else self._async_loop)
        self._eval_loop = tf.function(self._sync_eval if not distribution.is_async
                                      else self._local_eval)

    @staticmethod
    def _totals_variable(name: str) -> tf.Variable:
        return tf.Variable(tf.zeros([_TOTALS]), trainable=False, name=name,
                           synchronization=tf.VariableSynchronization.ON_READ,
                           aggregation=tf.VariableAggregation.SUM)

    # ----- the inner step ---------------------------------------------------------------
    def _totals(self, labels, outputs, per_example_loss) -> tf.Tensor:
        count = tf.cast(tf.shape(per_example_loss)[0], tf.float32)
        correct = tf.constant(0.0)
        if self._accuracy:
            predicted = tf.argmax(outputs, axis=-1, output_type=tf.int64)
            hits = tf.equal(predicted, tf.cast(tf.reshape(labels, tf.shape(predicted)), tf.int64))
            correct = tf.reduce_sum(tf.cast(hits, tf.float32))
        return tf.stack([tf.reduce_sum(tf.cast(per_example_loss, tf.float32)), correct, count])

    def _per_example_loss(self, labels, outputs) -> tf.Tensor:
        losses = tf.convert_to_tensor(self._loss(labels, outputs))
        if losses.shape.rank and losses.shape.rank > 1:
            losses = tf.reduce_mean(losses, axis=list(range(1, losses.shape.rank)))
        if losses.shape.rank == 0:
            # Raised while tracing; strategy.run re-wraps it, so fit() re-raises this message.
            self._trace_problem = (
                "loss returned a scalar; it must return one loss per example (shape [batch]) "
                "so the trainer can average over the global batch.")
            raise ConfigError(self._trace_problem)
        return losses

    def _replica_step(self, batch) -> tf.Tensor:
        features, labels = batch
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self.model(features, training=True)
            per_example = self._per_example_loss(labels, outputs)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)
            if self.model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
        gradients = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._totals(labels, outputs, per_example)

    def _replica_eval(self, batch) -> tf.Tensor:
        features, labels = batch
        outputs = self.model(features, training=False)
        return self._totals(labels, outputs, self._per_example_loss(labels, outputs))

    # ----- compiled loops -----------------------------------------------------------------
    def _sync_loop(self, iterator, num_steps):
        def step(batch):
            self._train_totals.assign_add(self._replica_step(batch))

        for _ in tf.range(num_steps):
            self.distribution.strategy.run(step, args=(next(iterator),))

    def _async_loop(self, iterator, num_steps):
        strategy = self.distribution.strategy
        totals = tf.zeros([_TOTALS])
        for _ in tf.range(num_steps):
            per_replica = strategy.run(self._replica_step, args=(next(iterator),))
            totals += tf.add_n(strategy.experimental_local_results(per_replica))
        return totals

    def _sync_eval(self, dataset):
        def step(batch):
            self._val_totals.assign_add(self._replica_eval(batch))

        for batch in dataset:
            self.distribution.strategy.run(step, args=(batch,))

    def _local_eval(self, dataset):
        totals = tf.zeros([_TOTALS])
        for batch in dataset:
            totals += self._replica_eval(batch)
        return totals

    # ----- one epoch --------------------------------------------------------------------
    def _loop_sizes(self, steps: int) -> List[int]:
        full, rest = divmod(steps, self.steps_per_loop)
        return [self.steps_per_loop] * full + ([rest] if rest else [])

    def _train_epoch_sync(self, iterator, steps: int) -> tf.Tensor:
        self._train_totals.assign(tf.zeros([_TOTALS]))
        for size in self._loop_sizes(steps):
            self._train_loop(iterator, tf.constant(size))
        return tf.convert_to_tensor(self._train_totals)

    def _train_epoch_async(self, iterator, steps: int) -> tf.Tensor:
        coordinator = self.distribution.coordinator
        results = [coordinator.schedule(self._train_loop, args=(iterator, tf.constant(size)))
                   for size in self._loop_sizes(steps)]
        coordinator.join()
        return tf.add_n([tf.convert_to_tensor(r.fetch()) for r in results])

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
            train = iter(coordinator.create_per_worker_dataset(train_fn))
            validation = validation_fn(None) if validation_fn else None
            return train, validation
        train = iter(strategy.distribute_datasets_from_function(train_fn))
        validation = (strategy.distribute_datasets_from_function(validation_fn)
                      if validation_fn else None)
        return train, validation

    # ----- the outer loop ---------------------------------------------------------------
    def fit(self, train_fn: DatasetFn, *, epochs: int, steps_per_epoch: int,
            validation_fn: Optional[DatasetFn] = None, model_dir: Optional[str] = None,
            export: bool = True) -> History:
        """Trains for ``epochs`` epochs of ``steps_per_epoch`` steps.

        Args:
          train_fn: dataset function of ``InputContext``; its dataset must not run out.
          epochs: the epoch to stop after; a restored run continues from its epoch.
          steps_per_epoch: optimizer steps per epoch (per worker step for PSS, all workers).
          validation_fn: dataset function read once per epoch, or None.
          model_dir: checkpoints each epoch and resumes from the latest; None keeps nothing.
          export: with ``model_dir``, the chief writes ``model_dir/model.keras`` at the end.

        Returns:
          The History of the epochs run by this call.
        """
        check_positive("epochs", epochs)
        check_positive("steps_per_epoch", steps_per_epoch)
        history = History()
        keeper = None
        if model_dir:
            keeper = CheckpointKeeper(self.checkpoint, model_dir=model_dir,
                                      role=self.distribution.role)
            history.restored_from = keeper.restore_latest()
        train, validation = self._make_inputs(train_fn, validation_fn)
        run_epoch = self._train_epoch_async if self.distribution.is_async else self._train_epoch_sync
        for epoch in range(int(self.epoch.numpy()) + 1, epochs + 1):
            started = time.perf_counter()
            train_totals = self._traced(run_epoch, train, steps_per_epoch).numpy()
            seconds = time.perf_counter() - started
            val_totals = (self._traced(self._evaluate, validation).numpy()
                          if validation is not None else None)
            log = self._epoch_log(epoch, steps_per_epoch, train_totals, val_totals, seconds)
            history.epochs.append(log)
            self.epoch.assign(epoch)
            if keeper:
                keeper.save(int(self.optimizer.iterations.numpy()))
            if self._log:
                self._log(log)
        history.final_step = int(self.optimizer.iterations.numpy())
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
            if self._trace_problem:
                raise ConfigError(self._trace_problem) from None
            raise

    def _epoch_log(self, epoch, steps, train_totals, val_totals, seconds) -> EpochLog:
        loss_sum, correct, count = (float(v) for v in train_totals)
        if not math.isfinite(loss_sum):
            raise FloatingPointError(
                f"training loss became {loss_sum} in epoch {epoch}; lower --learning_rate "
                "or check the data for NaN/inf.")
        val_loss = val_accuracy = None
        if val_totals is not None:
            val_loss = _ratio(val_totals[0], val_totals[2])
            val_accuracy = _ratio(val_totals[1], val_totals[2]) if self._accuracy else None
        return EpochLog(
            epoch=epoch, steps=steps, train_loss=loss_sum / count,
            train_accuracy=correct / count if self._accuracy else None,
            val_loss=val_loss, val_accuracy=val_accuracy, train_seconds=seconds,
            examples=int(count))


def print_epoch(log: EpochLog, *, epochs: Optional[int] = None) -> None:
    """One line per epoch: loss, accuracies, seconds and examples/s."""
    parts = [f"epoch {log.epoch}" + (f"/{epochs}" if epochs else ""),
             f"loss {log.train_loss:.4f}"]
    if log.train_accuracy is not None:
        parts.append(f"accuracy {log.train_accuracy:.4f}")
    if log.val_loss is not None:
        parts.append(f"val_loss {log.val_loss:.4f}")
    if log.val_accuracy is not None:
        parts.append(f"val_accuracy {log.val_accuracy:.4f}")
    parts.append(f"{log.train_seconds:.2f} s, {log.examples_per_sec:,.0f} examples/s")
    print(" - ".join(parts), flush=True)
