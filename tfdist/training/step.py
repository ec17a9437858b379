"""The inner step: forward, loss, gradients, reduction and update, compiled into loops.

Owns what one replica does per micro-batch (forward pass, per-example loss
averaged over the global batch, loss scaling for float16, gradients), how
`grad_accum_steps` micro-batches add up to one update, the all-reduce through
`communication.GradientReducer` and the optimizer update, and the
`tf.function` loops that run `steps_per_loop` updates per call: one for the
synchronous strategies (`strategy.run`; totals summed into sync-on-read
variables) and one scheduled on parameter-server workers (totals and the index
of the worker that ran the call returned).
With a model compiled by `model.compile` (the `tfdist.fit` front door) the
loss is the model's own (`compute_loss`: compiled losses, `loss_weights`,
sample weights, regularization), its compiled metrics and loss tracker are updated
in the replica step, and a model that overrides `train_step`/`test_step` runs
its own step inside `strategy.run` (sync strategies). Epochs, validation and
checkpoints belong to `trainer`.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from tfdist.config import ConfigError
from tfdist.distribute.communication import GradientReducer, disable_optimizer_all_reduce
from tfdist.layers import sharded_embeddings

LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
TOTALS = 3  # Summed per replica: [loss sum, correct predictions, examples].


def sparse_categorical_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per-example cross-entropy of integer labels against logits."""
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def _hits(labels, outputs) -> tf.Tensor:
    """Argmax hits per example, for class-index labels or one-hot rows alike."""
    predicted = tf.argmax(outputs, axis=-1, output_type=tf.int64)
    if (
        labels.shape.rank is not None
        and labels.shape.rank == outputs.shape.rank
        and labels.shape[-1] == outputs.shape[-1]
        and outputs.shape[-1] != 1
    ):
        labels = tf.argmax(labels, axis=-1, output_type=tf.int64)  # One-hot rows.
    return tf.equal(predicted, tf.cast(tf.reshape(labels, tf.shape(predicted)), tf.int64))


def _count_totals(batch) -> tf.Tensor:
    """Totals of a step whose loss only the model knows: the examples it consumed."""
    x, _, _ = keras.utils.unpack_x_y_sample_weight(batch)
    count = tf.cast(tf.shape(tf.nest.flatten(x)[0])[0], tf.float32)
    return tf.stack([tf.constant(0.0), tf.constant(0.0), count])


def _add(a, b):
    """Sums two gradients, dense or sparse (IndexedSlices are concatenated)."""
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, tf.IndexedSlices) or isinstance(b, tf.IndexedSlices):
        a, b = (g if isinstance(g, tf.IndexedSlices) else _as_slices(g) for g in (a, b))
        return tf.IndexedSlices(
            tf.concat([a.values, b.values], 0), tf.concat([a.indices, b.indices], 0), a.dense_shape
        )
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
        lambda t: tf.cast(t, tf.float32) if t.dtype.is_floating else t, outputs
    )


class StepFunctions:
    """Builds the per-replica step and the compiled loops for one model and optimizer.

    Args:
      strategy: the `tf.distribute` strategy the variables were created under.
      model: the Keras 3 model.
      optimizer: a built Keras optimizer (a `LossScaleOptimizer` scales the loss).
      loss: `loss(labels, outputs)` → one loss per example.
      global_batch_size: examples of one micro-batch over all replicas.
      grad_accum_steps: micro-batches summed into each update.
      reducer: sums gradients across replicas.
      accuracy: also count argmax hits.
      metrics: Keras metrics updated with `(labels, outputs)` of each training batch.
    """

    def __init__(
        self,
        *,
        strategy,
        model,
        optimizer,
        loss: LossFn | None,
        global_batch_size: int,
        grad_accum_steps: int,
        reducer: GradientReducer,
        accuracy: bool,
        metrics=(),
        compiled: bool = False,
        own_steps: bool = False,
    ):
        self.strategy = strategy
        self.model = model
        self.optimizer = optimizer
        self.loss = loss
        self.global_batch_size = global_batch_size
        self.grad_accum_steps = grad_accum_steps
        self.reducer = reducer
        self.accuracy = accuracy
        self.metrics = tuple(metrics)
        self.compiled = compiled
        self._metric_state = None  # Set while an async loop traces (`async_metric_variables`).
        self.own_steps = own_steps  # The model's train_step/test_step run as they are.
        self.trace_problem: str | None = None
        self._scales_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self._tables = sharded_embeddings(model)  # Updated sparsely on the ps, not by Keras.
        if not own_steps:  # A model's own train_step applies through Keras' all-reduce.
            disable_optimizer_all_reduce(optimizer)

    def _variables(self) -> list:
        parts = [part for table in self._tables for part in table.parts()]
        return list(self.model.trainable_variables) + parts

    # ----- one replica ------------------------------------------------------------------
    def totals(self, labels, outputs, per_example_loss) -> tf.Tensor:
        count = tf.cast(tf.shape(per_example_loss)[0], tf.float32)
        correct = tf.constant(0.0)
        if self.accuracy:
            correct = tf.reduce_sum(tf.cast(_hits(labels, outputs), tf.float32))
        return tf.stack([tf.reduce_sum(tf.cast(per_example_loss, tf.float32)), correct, count])

    def per_example_loss(self, labels, outputs) -> tf.Tensor:
        losses = tf.convert_to_tensor(self.loss(labels, outputs))
        if losses.shape.rank and losses.shape.rank > 1:
            losses = tf.reduce_mean(losses, axis=list(range(1, losses.shape.rank)))
        if losses.shape.rank == 0:
            # Raised while tracing; strategy.run re-wraps it, so the trainer re-raises this.
            self.trace_problem = (
                "loss returned a scalar; it must return one loss per example (shape [batch]) "
                "so the trainer can average over the global batch."
            )
            raise ConfigError(self.trace_problem)
        return losses

    def _compiled_loss(self, batch, training: bool):
        """The model's own loss of one batch: `(loss for gradients, totals, x, y, y_pred, sw)`.

        Keras' `compute_loss` averages over the local batch and divides by the replicas
        in sync, so the summed gradients average over the global batch as in Keras' fit.
        """
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        y_pred = self.model(x, training=training)
        loss = self.model._compute_loss(
            x=x,
            y=y,
            y_pred=y_pred,
            sample_weight=sample_weight,
            training=training,
        )
        count = tf.cast(tf.shape(tf.nest.flatten(x)[0])[0], tf.float32)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        mean = tf.cast(loss, tf.float32) * float(replicas)
        if not (training and self.strategy_is_async):  # PSS: the coordinator sums totals.
            self.model._loss_tracker.update_state(mean, sample_weight=count)
        totals = tf.stack([mean * count, tf.constant(0.0), count])
        return loss, totals, (x, y, y_pred, sample_weight)

    def _forward_backward_compiled(self, batch):
        variables = self._variables()
        with tf.GradientTape() as tape:
            loss, totals, (x, y, y_pred, sample_weight) = self._compiled_loss(batch, True)
            if self._scales_loss:
                loss = self.optimizer.scale_loss(loss)
        if not self.strategy_is_async:
            self.model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        elif self._metric_state is not None:  # PSS: updates of the ps variables would race.
            self._metric_state = list(
                self.model._compile_metrics.stateless_update_state(
                    self._metric_state, y, y_pred, sample_weight=sample_weight
                )
            )
        return tape.gradient(loss, variables), totals

    @property
    def strategy_is_async(self) -> bool:
        return isinstance(self.strategy, tf.distribute.experimental.ParameterServerStrategy)

    def _forward_backward(self, batch):
        if self.compiled:
            return self._forward_backward_compiled(batch)
        features, labels = batch
        variables = self._variables()
        with tf.GradientTape() as tape:
            outputs = _float32(self.model(features, training=True))
            per_example = self.per_example_loss(labels, outputs)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)
            if self.model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
            if self._scales_loss:
                loss = self.optimizer.scale_loss(loss)
        for metric in self.metrics:
            metric.update_state(labels, outputs)
        return tape.gradient(loss, variables), self.totals(labels, outputs, per_example)

    def _apply(self, gradients: list[tf.Tensor | None]) -> None:
        if self.grad_accum_steps > 1:
            gradients = [_scale(g, 1.0 / self.grad_accum_steps) for g in gradients]
        dense_count = len(self.model.trainable_variables)
        if dense_count:
            reduced = self.reducer(gradients[:dense_count])
            self.optimizer.apply_gradients(
                zip(reduced, self.model.trainable_variables, strict=False)
            )
        offset = dense_count
        for table in self._tables:
            count = len(table.parts())
            table.apply_sparse_gradients(gradients[offset : offset + count])
            offset += count

    def replica_step(self, batch, accumulated=None, apply=True, record=None):
        """One micro-batch on one replica: gradients added to `accumulated`, maybe applied.

        Returns `(gradients, totals)`: gradients are None once applied; totals are
        recorded through `record` when given (sync), else returned.
        """
        if self.own_steps:
            self.model.train_step(batch)
            totals = _count_totals(batch)
            if record is not None:
                record(totals)
                totals = tf.zeros([TOTALS])
            return None, totals
        gradients, totals = self._forward_backward(batch)
        if accumulated is not None:
            gradients = [_add(a, g) for a, g in zip(accumulated, gradients, strict=False)]
        if apply:
            self._apply(gradients)
            gradients = None
        if record is not None:
            record(totals)
            totals = tf.zeros([TOTALS])
        return gradients, totals

    def replica_eval(self, batch) -> tf.Tensor:
        if self.own_steps:
            self.model.test_step(batch)
            return _count_totals(batch)
        if self.compiled:
            _, totals, (x, y, y_pred, sample_weight) = self._compiled_loss(batch, False)
            self.model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
            return totals
        features, labels = batch
        outputs = _float32(self.model(features, training=False))
        return self.totals(labels, outputs, self.per_example_loss(labels, outputs))

    # ----- compiled loops ---------------------------------------------------------------
    def _update(self, iterator, record=None) -> tf.Tensor:
        """One optimizer update: `grad_accum_steps` micro-batches; returns local totals."""
        totals = tf.zeros([TOTALS])
        gradients = None
        for micro in range(self.grad_accum_steps):
            last = micro == self.grad_accum_steps - 1
            gradients, step_totals = self.strategy.run(
                self.replica_step,
                args=(next(iterator),),
                kwargs={"accumulated": gradients, "apply": last, "record": record},
            )
            totals += tf.add_n(self.strategy.experimental_local_results(step_totals))
        return totals

    def sync_loop(self, iterator, num_updates, totals_variable) -> None:
        """Runs `num_updates` updates; totals go to a sync-on-read variable."""
        for _ in tf.range(num_updates):
            self._update(iterator, record=totals_variable.assign_add)

    def async_metric_variables(self) -> list:
        """The compiled metrics' variables a worker's loop sums updates of (PSS), or [].

        Workers do not update the ps-placed metric variables (two workers' read-then-write
        updates would race): each loop starts from zeros, returns the change of every
        variable (`stateless_update_state`), and the coordinator adds the changes. This
        holds for metrics whose variables sum (Keras' `aggregation="sum"`: means,
        accuracies, confusion counts); others are not tracked while training.
        """
        metrics = getattr(self.model, "_compile_metrics", None)
        if not self.compiled or metrics is None or not metrics.variables:
            return []
        variables = list(metrics.variables)
        if any(getattr(v, "aggregation", "sum") != "sum" for v in variables):
            return []
        return variables

    def async_loop(self, iterator, num_updates) -> dict:
        """Runs `num_updates` updates on a parameter-server worker.

        Returns `{"totals": ..., "worker": ...}`: their totals and the index of the
        worker that ran them (so the coordinator counts each worker's steps from the
        results it fetches), and with tracked compiled metrics `"metrics"`, the change
        of each metric variable (`async_metric_variables`).
        """
        worker = tf.distribute.coordinator.experimental_get_current_worker_index()
        totals = tf.zeros([TOTALS])
        tracked = self.async_metric_variables()
        if not tracked:
            for _ in tf.range(num_updates):
                totals += self._update(iterator)
            return {"totals": totals, "worker": worker}
        state = [tf.zeros(v.shape, v.dtype) for v in tracked]
        for _ in tf.range(num_updates):
            self._metric_state = state
            totals += self._update(iterator)
            state = self._metric_state
        self._metric_state = None
        return {"totals": totals, "worker": worker, "metrics": state}

    def sync_eval(self, dataset, totals_variable) -> None:
        for batch in dataset:
            self.strategy.run(
                lambda b: totals_variable.assign_add(self.replica_eval(b)), args=(batch,)
            )

    def local_eval(self, dataset) -> tf.Tensor:
        totals = tf.zeros([TOTALS])
        for batch in dataset:
            totals += self.replica_eval(batch)
        return totals
