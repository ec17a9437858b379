"""Partitioning of embedding tables across parameter servers.

Owns the `variable_partitioner` given to ParameterServerStrategy. Keras 3
variables cannot be partitioned (a `keras.Variable` over a `ShardedVariable`
fails: "'ShardedVariable' object has no attribute 'handle'", TF 2.21), so this
partitioner splits only the variables created inside
`tfdist.layers.sharding_tables()` — the tables of `tfdist.layers.ShardedEmbedding`
— and leaves every other variable whole on one ps.
"""

from __future__ import annotations

import tensorflow as tf

from tfdist.layers import creating_tables


class TablePartitioner:
    """Splits table variables into up to `max_shards` parts of at least `min_shard_bytes`.

    Args:
      max_shards: at most this many parts (usually the number of ps tasks).
      min_shard_bytes: a table smaller than this stays whole.
    """

    def __init__(self, *, max_shards: int, min_shard_bytes: int = 1024):
        self.max_shards = max_shards
        self._split = tf.distribute.experimental.partitioners.MinSizePartitioner(
            min_shard_bytes=min_shard_bytes, max_shards=max_shards
        )

    def __call__(self, shape, dtype):
        if creating_tables():
            return self._split(shape, dtype)
        return [1] * len(shape)
