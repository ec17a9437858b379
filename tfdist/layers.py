"""Embedding tables that can live in parts on several parameter servers.

Owns `ShardedEmbedding`: a Keras 3 layer whose table is a plain `tf.Variable`
created inside `sharding_tables()`, so ParameterServerStrategy with a
`tfdist.distribute.partitioning.TablePartitioner` (which asks
`creating_tables()`) makes it a `ShardedVariable` split row-wise across
the ps tasks (model parallelism: no ps holds the whole table). Lookups use
`tf.nn.embedding_lookup`. Keras optimizers cannot update a `ShardedVariable`,
so the layer updates its own parts with sparse Adagrad, on the ps that holds
each part. Without a partitioner (one ps, or a synchronous strategy) the table
is an ordinary Keras weight trained by the model's optimizer.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

_INITIAL_ACCUMULATOR = 1e-6  # Small: batch-averaged gradients are ~1e-4 here.
_STATE = threading.local()


@contextlib.contextmanager
def sharding_tables():
    """Variables created inside are split by an active `TablePartitioner`."""
    previous = creating_tables()
    _STATE.active = True
    try:
        yield
    finally:
        _STATE.active = previous


def creating_tables() -> bool:
    """Whether this thread is inside `sharding_tables()`."""
    return getattr(_STATE, "active", False)


@keras.saving.register_keras_serializable(package="tfdist")
class ShardedEmbedding(keras.layers.Layer):
    """Looks up rows of a `(input_dim, output_dim)` table, shardable across ps tasks.

    A saved model holds the whole table; `import tfdist.layers` before
    `keras.saving.load_model` so Keras finds this class.

    Args:
      input_dim: rows (vocabulary size).
      output_dim: columns (embedding size).
      learning_rate: sparse Adagrad rate used when the table is sharded.
      seed: seeds the initial table.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        *,
        learning_rate: float = 0.05,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.learning_rate, self.seed = float(learning_rate), int(seed)
        self.sharded_table = None
        self._accumulators: list[tf.Variable] = []

    def _initial_table(self):
        return tf.random.stateless_uniform(
            [self.input_dim, self.output_dim], [self.seed, 7], minval=-0.05, maxval=0.05
        )

    def build(self, input_shape=None):
        strategy = tf.distribute.get_strategy()
        if isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy):
            with sharding_tables():
                table = tf.Variable(
                    self._initial_table,
                    name=f"{self.name}/table",
                    shape=[self.input_dim, self.output_dim],
                    dtype=tf.float32,
                )
            self.sharded_table = table
            self._accumulators = [self._accumulator_for(strategy, part) for part in self.parts()]
            self.built = True
            return
        self.table = self.add_weight(
            shape=(self.input_dim, self.output_dim),
            name="table",
            initializer=keras.initializers.RandomUniform(-0.05, 0.05, seed=self.seed),
        )
        self.built = True

    @staticmethod
    def _accumulator_for(strategy, part):
        with strategy.extended.colocate_vars_with(part):
            return tf.Variable(
                tf.fill(part.shape, _INITIAL_ACCUMULATOR),
                trainable=False,
                name=part.name.split(":")[0] + "/adagrad",
            )

    @property
    def is_sharded(self) -> bool:
        """True under ParameterServerStrategy: the table is updated sparsely on the ps."""
        return self.sharded_table is not None

    def parts(self) -> Sequence[tf.Variable]:
        """The table's parts, in row order (one when it is not split)."""
        if not self.is_sharded:
            return [self.table.value]
        return list(getattr(self.sharded_table, "variables", [self.sharded_table]))

    def call(self, ids):
        table = self.sharded_table if self.is_sharded else self.table
        return tf.nn.embedding_lookup(table, tf.cast(ids, tf.int32))

    def apply_sparse_gradients(self, gradients) -> None:
        """Sparse Adagrad on each part, run where the part lives."""
        for part, accumulator, gradient in zip(
            self.parts(), self._accumulators, gradients, strict=False
        ):
            if gradient is None:
                continue
            if isinstance(gradient, tf.IndexedSlices):
                indices, segment = tf.unique(gradient.indices)
                values = tf.math.unsorted_segment_sum(
                    gradient.values, segment, tf.shape(indices)[0]
                )
            else:
                indices = tf.range(tf.shape(gradient)[0])
                values = gradient
            tf.raw_ops.ResourceSparseApplyAdagradV2(
                var=part.handle,
                accum=accumulator.handle,
                lr=self.learning_rate,
                epsilon=1e-7,
                grad=values,
                indices=indices,
            )

    def placement(self) -> list:
        """Where each part lives: `[{"device": ..., "rows": ...}, ...]`."""
        return [{"device": part.device, "rows": int(part.shape[0])} for part in self.parts()]

    def table_value(self) -> np.ndarray:
        """The whole table, its parts concatenated."""
        return np.concatenate([np.asarray(part.numpy()) for part in self.parts()], axis=0)

    def save_own_variables(self, store):
        store["table"] = self.table_value()

    def load_own_variables(self, store):
        value = np.asarray(store["table"])
        offset = 0
        for part in self.parts():
            rows = int(part.shape[0])
            part.assign(value[offset : offset + rows])
            offset += rows

    def get_config(self):
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
        }


def sharded_embeddings(model: keras.Model) -> list[ShardedEmbedding]:
    """The ShardedEmbedding layers of `model` whose tables are updated sparsely (PSS)."""
    found, stack = [], [model]
    while stack:
        layer = stack.pop()
        if isinstance(layer, ShardedEmbedding) and layer.is_sharded:
            found.append(layer)
        stack.extend(getattr(layer, "layers", []) or [])
    return found
