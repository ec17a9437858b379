"""The one training step: what a replica does with one batch of a compiled Keras model.

Owns Keras' `train_step`/`test_step` contract for a model compiled with `model.compile`:
the forward pass (`training=` when `call` takes it), the model's own loss
(`_compute_loss`: compiled losses, `loss_weights`, sample weights, regularization,
divided by the replicas in sync), the loss tracker and compiled metrics, loss scaling
under `mixed_float16`. Around it, tfdist's levers: `grad_accum_steps` micro-batches summed
into one update, the gradient all-reduce through a reducer (`GradientReducer` with
compression, or local SGD's replica-local one), sparse updates of `ShardedEmbedding`
tables on the ps, and under `parameter_server` metric updates kept in a stateless copy
(`MetricState.stateless`) that the worker returns. A model that overrides
`train_step`/`test_step` runs its own, as Keras' fit would. Loops over steps belong to
`tfdist.training.runners`.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras.src.losses import loss as keras_loss

from tfdist.data.replica_batches import is_metered, real_rows
from tfdist.distribute.communication import disable_optimizer_all_reduce
from tfdist.layers import sharded_embeddings
from tfdist.training.metric_state import MetricState


def overrides(model: keras.Model, method: str) -> bool:
    """Whether the model's class defines its own `method` (`train_step`, `test_step`, ...)."""
    return getattr(type(model), method) is not getattr(keras.Model, method)


def own_train_step(model: keras.Model) -> str | None:
    """The model's class name when it brings its own `train_step`, else None."""
    return type(model).__name__ if overrides(model, "train_step") else None


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


def scaled(gradient, factor):
    """`gradient * factor`, dense or sparse; None stays None."""
    if gradient is None:
        return None
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values * factor, gradient.indices, gradient.dense_shape)
    return gradient * factor


def _batch_size(x) -> tf.Tensor:
    return tf.shape(next(t for t in tf.nest.flatten(x) if t is not None))[0]


class Step:
    """The per-replica train and test step of one compiled model and optimizer.

    Args:
      model: the compiled Keras model (built, in the strategy's scope).
      optimizer: its built optimizer.
      reducer: sums gradients across replicas (called in replica context).
      grad_accum_steps: micro-batches summed into each update.
      metric_state: the model's metrics as one vector (`MetricState`).
    """

    def __init__(
        self,
        *,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        reducer,
        grad_accum_steps: int,
        metric_state: MetricState,
    ):
        self.model = model
        self.optimizer = optimizer
        self.reducer = reducer
        self.grad_accum_steps = grad_accum_steps
        self.metric_state = metric_state
        self.own_train_step = overrides(model, "train_step")
        self.own_test_step = overrides(model, "test_step")
        self._tables = sharded_embeddings(model)  # Updated sparsely on the ps, not by Keras.
        self._dense = list(model.trainable_variables)
        # `compile(jit_compile=True)`, as Keras resolves it ("auto" is off on CPUs and
        # under a strategy; a model with a layer XLA cannot compile is False): the
        # forward and backward pass run as one XLA computation, as in Keras' own step.
        # Not under parameter_server: XLA cannot compile reads of the variables on the ps.
        on_ps = isinstance(
            model.distribute_strategy, tf.distribute.experimental.ParameterServerStrategy
        )
        self.jit_compile = bool(model.jit_compile) and not model.run_eagerly and not on_ps
        self._xla_gradients = (
            tf.function(self._gradients, jit_compile=True, reduce_retracing=True)
            if self.jit_compile
            else None
        )
        # With one replica the whole step (the optimizer's update too) is one XLA
        # computation, as Keras compiles its own; with several, the all-reduce sits between.
        one_replica = model.distribute_strategy.num_replicas_in_sync == 1
        self._xla_whole = (
            tf.function(self._whole_step, jit_compile=True, reduce_retracing=True)
            if self.jit_compile and one_replica and grad_accum_steps == 1
            else None
        )
        if not self.own_train_step:  # A model's own train_step applies through Keras' all-reduce.
            disable_optimizer_all_reduce(optimizer)

    @property
    def variables(self) -> list:
        """What gradients are taken of: the trainable weights, then the tables' parts."""
        return self._dense + [part for table in self._tables for part in table.parts()]

    def _forward(self, x, training: bool):
        if self.model._call_has_training_arg:
            return self.model(x, training=training)
        return self.model(x)

    def _loss(self, x, y, y_pred, sample_weight, training: bool, rows=None):
        """Keras' loss of one batch; updates the loss tracker as Keras' steps do.

        `rows`: the examples the batch holds when its first axis is not (a padded share).
        """
        loss = self.model._compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
        self.model._loss_tracker.update_state(
            keras_loss.unscale_loss_for_distribution(loss),
            sample_weight=_batch_size(x) if rows is None else rows,
        )
        return loss

    def _measured(self, batch, y_pred_of, training: bool):
        """`(loss, y_pred)` of a batch, with the loss tracker and metrics updated.

        A replica's share of a global batch (`tfdist.data.replica_batches`) is measured on
        its real rows only, and its loss weighed `n * R / m` so that the summed gradient
        is the mean over the global batch's `m` examples, as one device's.
        """
        if not is_metered(batch):
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
            y_pred = y_pred_of(x)
            loss = self._loss(x, y, y_pred, sample_weight, training)
            self.model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
            return loss, y_pred
        rows, real, total, keep = real_rows(batch)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(rows)
        y_pred = keep(y_pred_of(x))  # The forward pass sees the padded share, never empty.
        x, y, sample_weight = keep(x), keep(y), keep(sample_weight)
        loss = self._loss(x, y, y_pred, sample_weight, training, rows=real)
        self.model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        share = tf.cast(real * replicas, loss.dtype) / tf.cast(total, loss.dtype)
        return loss * share, y_pred

    def _model_input(self, batch):
        """The `x` a batch's forward pass sees (a replica's whole padded share)."""
        if is_metered(batch):
            batch = real_rows(batch)[0]
        return keras.utils.unpack_x_y_sample_weight(batch)[0]

    def own_data(self, batch):
        """What a model's own `train_step`/`test_step` gets: the batch as Keras gives it."""
        if not is_metered(batch):
            return batch
        rows, _, _, keep = real_rows(batch)
        return keep(rows)

    # ----- in replica context ----------------------------------------------------------
    def gradients(self, batch, state=None, values=None):
        """One micro-batch's gradients, with the metrics updated (under XLA with jit_compile).

        Args:
          batch: `(x, y, sample_weight)` as Keras unpacks it.
          state: parameter_server: the metric state to update instead of the variables.
          values: the values `self.variables` take for this batch instead of their own (a
            parameter_server worker's copy, `tfdist.training.ps_local_steps`); the
            gradients are then those of the values.

        Returns:
          `(gradients, state)`: the gradients of `self.variables`, and the new state (None
          without one).
        """
        if self._xla_gradients is not None:
            return self._xla_gradients(batch, state)
        return self._gradients(batch, state, values)

    def _gradients(self, batch, state=None, values=None):
        mapping = [] if values is None else list(zip(self.variables, values, strict=True))
        with tf.GradientTape() as tape:
            if values is None:
                # The forward pass runs outside any stateless scope, so the model's own
                # state updates (BatchNorm's moving statistics) reach its variables, as in
                # Keras.
                y_pred = self._forward(self._model_input(batch), training=True)
            else:
                tape.watch(values)
                y_pred = self._forward_on(mapping, self._model_input(batch))

            def measured():
                loss, _ = self._measured(batch, lambda x: y_pred, training=True)
                return loss

            if state is None and not mapping:
                loss = measured()
            elif state is None:
                with keras.StatelessScope(state_mapping=mapping):
                    loss = measured()
            else:
                loss, state = self.metric_state.stateless(state, measured, also=mapping)
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                loss = self.optimizer.scale_loss(loss)
        return tape.gradient(loss, self.variables if values is None else values), state

    def _forward_on(self, mapping: list, x):
        """The training forward pass with the variables read from `mapping`; what it
        writes to the model's other variables (BatchNorm's statistics, a Dropout's seed
        state) is then written to them, as without a mapping."""
        with keras.StatelessScope(state_mapping=mapping) as scope:
            y_pred = self._forward(x, training=True)
        for variable in self.model.non_trainable_variables:
            value = scope.get_current_value(variable)
            if value is not None:
                variable.assign(value)
        return y_pred

    def _whole_step(self, batch):
        gradients, _ = self._gradients(batch)
        self.apply(gradients)

    def apply(self, gradients, into=None) -> None:
        """Reduces the summed micro-batch gradients across replicas and updates the weights;
        `into`: `(optimizer, variables)` updated instead of the model's own (a worker's
        copy of the weights, `tfdist.training.ps_local_steps`)."""
        if self.grad_accum_steps > 1:
            gradients = [scaled(g, 1.0 / self.grad_accum_steps) for g in gradients]
        count = len(self._dense)
        if into is not None:
            optimizer, variables = into
            optimizer.apply_gradients(zip(gradients[:count], variables, strict=True))
            return
        if count:
            reduced = self.reducer(gradients[:count])
            self.optimizer.apply_gradients(zip(reduced, self._dense, strict=True))
        offset = count
        for table in self._tables:
            parts = len(table.parts())
            table.apply_sparse_gradients(gradients[offset : offset + parts])
            offset += parts

    def train(self, batch, accumulated=None, apply: bool = True, state=None, copy=None):
        """One micro-batch on one replica: its gradients added to `accumulated`, maybe applied.

        `copy`: `(values, optimizer, variables)`: the step reads the weights from `values`
        and applies to `variables` with `optimizer` (a parameter_server worker's copy).

        Returns `(gradients, state)`: the summed gradients (None once applied) and the
        metric state (parameter_server), or the model's own `train_step` logs as
        `(None, logs)`.
        """
        if self.own_train_step:
            return None, self.model.train_step(self.own_data(batch))
        if (
            self._xla_whole is not None
            and accumulated is None
            and apply
            and copy is None
            and state is None
        ):
            self._xla_whole(batch)
            return None, None
        values, into = (None, None) if copy is None else (copy[0], copy[1:])
        gradients, state = self.gradients(batch, state, values)
        if accumulated is not None:
            gradients = [_add(a, g) for a, g in zip(accumulated, gradients, strict=True)]
        if apply:
            self.apply(gradients, into)
            gradients = None
        return gradients, state

    def test(self, batch):
        """One evaluation batch: the loss tracker and metrics updated (Keras' `test_step`)."""
        if self.own_test_step:
            return self.model.test_step(self.own_data(batch))
        self._measured(batch, lambda x: self._forward(x, training=False), training=False)
        return None
