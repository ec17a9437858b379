"""The inner step: forward, loss, gradients, reduction and update, compiled into loops.

Owns what one replica does per micro-batch (forward pass, per-example loss
averaged over the global batch, loss scaling for float16, gradients), how
``grad_accum_steps`` micro-batches add up to one update, the all-reduce through
``communication.GradientReducer`` and the optimizer update, and the
``tf.function`` loops that run ``steps_per_loop`` updates per call: one for the
synchronous strategies (``strategy.run``; totals summed into sync-on-read
variables) and one scheduled on parameter-server workers (totals returned).
Epochs, validation and checkpoints belong to ``trainer``.
"""

from __future__ import annotations

from typing import Callable, List, Optional

import keras
import tensorflow as tf

from tfdist.distribute.communication import GradientReducer, disable_optimizer_all_reduce
from tfdist.config import ConfigError
from tfdist.layers import sharded_embeddings

LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
TOTALS = 3  # Summed per replica: [loss sum, correct predictions, examples].


def sparse_categorical_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per-example cross-entropy of integer labels against logits."""
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def _add(a, b):
    """Sums two gradients, dense or sparse (IndexedSlices are concatenated)."""
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, tf.IndexedSlices) or isinstance(b, tf.IndexedSlices):
        a, b = (g if isinstance(g, tf.IndexedSlices) else _as_slices(g) for g in (a, b))
        return tf.IndexedSlices(tf.concat([a.values, b.values], 0),
                                tf.concat([a.indices, b.indices], 0), a.dense_shape)
    return a + b


def _as_slices(dense):
    rows = tf.shape(dense)[0]
    return tf.IndexedSlices(dense, tf.range(rows), tf.shape(dense, out_type=tf.int64))


def _scale(gradient, factor):
    if gradient is None:
        return None
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values * factor, gradient.indices, gradient.dense_shape)
    return gradient * factor


def _float32(outputs):
    return tf.nest.map_structure(
        lambda t: tf.cast(t, tf.float32) if t.dtype.is_floating else t, outputs)


class StepFunctions:
    """Builds the per-replica step and the compiled loops for one model and optimizer.

    Args:
      strategy: the ``tf.distribute`` strategy the variables were created under.
      model: the Keras 3 model.
      optimizer: a built Keras optimizer (a ``LossScaleOptimizer`` scales the loss).
      loss: ``loss(labels, outputs)`` → one loss per example.
      global_batch_size: examples of one micro-batch over all replicas.
      grad_accum_steps: micro-batches summed into each update.
      reducer: sums gradients across replicas.
      accuracy: also count argmax hits.
      metrics: Keras metrics updated with ``(labels, outputs)`` of each training batch.
    """

    def __init__(self, *, strategy, model, optimizer, loss: LossFn, global_batch_size: int,
                 grad_accum_steps: int, reducer: GradientReducer, accuracy: bool,
                 metrics=()):
        self.strategy = strategy
        self.model = model
        self.optimizer = optimizer
        self.loss = loss
        self.global_batch_size = global_batch_size
        self.grad_accum_steps = grad_accum_steps
        self.reducer = reducer
        self.accuracy = accuracy
        self.metrics = tuple(metrics)
        self.trace_problem: Optional[str] = None
        self._scales_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self._tables = sharded_embeddings(model)  # Updated sparsely on the ps, not by Keras.
        disable_optimizer_all_reduce(optimizer)

    def _variables(self) -> list:
        parts = [part for table in self._tables for part in table.parts()]
        return list(self.model.trainable_variables) + parts

    # ----- one replica ------------------------------------------------------------------
    def totals(self, labels, outputs, per_example_loss) -> tf.Tensor:
        count = tf.cast(tf.shape(per_example_loss)[0], tf.float32)
        correct = tf.constant(0.0)
        if self.accuracy:
            predicted = tf.argmax(outputs, axis=-1, output_type=tf.int64)
            hits = tf.equal(predicted, tf.cast(tf.reshape(labels, tf.shape(predicted)), tf.int64))
            correct = tf.reduce_sum(tf.cast(hits, tf.float32))
        return tf.stack([tf.reduce_sum(tf.cast(per_example_loss, tf.float32)), correct, count])

    def per_example_loss(self, labels, outputs) -> tf.Tensor:
        losses = tf.convert_to_tensor(self.loss(labels, outputs))
        if losses.shape.rank and losses.shape.rank > 1:
            losses = tf.reduce_mean(losses, axis=list(range(1, losses.shape.rank)))
        if losses.shape.rank == 0:
            # Raised while tracing; strategy.run re-wraps it, so the trainer re-raises this.
            self.trace_problem = (
                "loss returned a scalar; it must return one loss per example (shape [batch]) "
                "so the trainer can average over the global batch.")
            raise ConfigError(self.trace_problem)
        return losses

    def _forward_backward(self, batch):
        features, labels = batch
        variables = self._variables()
        with tf.GradientTape() as tape:
            outputs = _float32(self.model(features, training=True))
            per_example = self.per_example_loss(labels, outputs)
            loss = tf.nn.compute_average_loss(per_example,
                                              global_batch_size=self.global_batch_size)
            if self.model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
            if self._scales_loss:
                loss = self.optimizer.scale_loss(loss)
        for metric in self.metrics:
            metric.update_state(labels, outputs)
        return tape.gradient(loss, variables), self.totals(labels, outputs, per_example)

    def _apply(self, gradients: List[Optional[tf.Tensor]]) -> None:
        if self.grad_accum_steps > 1:
            gradients = [_scale(g, 1.0 / self.grad_accum_steps) for g in gradients]
        dense_count = len(self.model.trainable_variables)
        if dense_count:
            reduced = self.reducer(gradients[:dense_count])
            self.optimizer.apply_gradients(zip(reduced, self.model.trainable_variables))
        offset = dense_count
        for table in self._tables:
            count = len(table.parts())
            table.apply_sparse_gradients(gradients[offset:offset + count])
            offset += count

    def replica_step(self, batch, accumulated=None, apply=True, record=None):
        """One micro-batch on one replica: gradients added to ``accumulated``, maybe applied.

        Returns ``(gradients, totals)``: gradients are None once applied; totals are
        recorded through ``record`` when given (sync), else returned.
        """
        gradients, totals = self._forward_backward(batch)
        if accumulated is not None:
            gradients = [_add(a, g) for a, g in zip(accumulated, gradients)]
        if apply:
            self._apply(gradients)
            gradients = None
        if record is not None:
            record(totals)
            totals = tf.zeros([TOTALS])
        return gradients, totals

    def replica_eval(self, batch) -> tf.Tensor:
        features, labels = batch
        outputs = _float32(self.model(features, training=False))
        return self.totals(labels, outputs, self.per_example_loss(labels, outputs))

    # ----- compiled loops ---------------------------------------------------------------
    def _update(self, iterator, record=None) -> tf.Tensor:
        """One optimizer update: ``grad_accum_steps`` micro-batches; returns local totals."""
        totals = tf.zeros([TOTALS])
        gradients = None
        for micro in range(self.grad_accum_steps):
            last = micro == self.grad_accum_steps - 1
            gradients, step_totals = self.strategy.run(
                self.replica_step, args=(next(iterator),),
                kwargs={"accumulated": gradients, "apply": last, "record": record})
            totals += tf.add_n(self.strategy.experimental_local_results(step_totals))
        return totals

    def sync_loop(self, iterator, num_updates, totals_variable) -> None:
        """Runs ``num_updates`` updates; totals go to a sync-on-read variable."""
        for _ in tf.range(num_updates):
            self._update(iterator, record=totals_variable.assign_add)

    def async_loop(self, iterator, num_updates) -> tf.Tensor:
        """Runs ``num_updates`` updates on a parameter-server worker; returns their totals."""
        totals = tf.zeros([TOTALS])
        for _ in tf.range(num_updates):
            totals += self._update(iterator)
        return totals

    def sync_eval(self, dataset, totals_variable) -> None:
        for batch in dataset:
            self.strategy.run(lambda b: totals_variable.assign_add(self.replica_eval(b)),
                              args=(batch,))

    def local_eval(self, dataset) -> tf.Tensor:
        totals = tf.zeros([TOTALS])
        for batch in dataset:
            totals += self.replica_eval(batch)
        return totals
