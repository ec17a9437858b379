"""Distributed `predict`: outputs of every example once, in the order of the inputs.

Owns splitting `x` for prediction and putting the outputs back in order: under
`multi_worker` each worker predicts a contiguous block of the examples and the
blocks are all-gathered (padded to the longest, then trimmed), so every worker ends
with all outputs; one process with several replicas splits each global batch
between them (`experimental_distribute_dataset`) and concatenates the replicas'
parts in order; the `parameter_server` coordinator predicts itself, reading the
variables from the ps. The model's `predict_step` (overridden or not) makes the
outputs.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tfdist.config import ConfigError
from tfdist.data.keras_inputs import check_batch_size, dataset_batch_size, is_dataset


def _inputs(x):
    """`x` as a nest of arrays, its row count; a dataset is read whole (unbatched)."""
    if is_dataset(x):
        batch = dataset_batch_size(x)
        if batch is None:
            raise ConfigError("x is an unbatched dataset; batch it, e.g. x.batch(64).")
        rows = list(x.unbatch().as_numpy_iterator())
        first = rows[0] if rows else None
        if isinstance(first, tuple):  # (x, y[, sample_weight]) elements: keep x.
            rows = [row[0] for row in rows]
        stacked = tf.nest.map_structure(lambda *leaves: np.stack(leaves), *rows)
        return stacked, len(rows), batch
    arrays = tf.nest.map_structure(np.asarray, x)
    counts = {len(leaf) for leaf in tf.nest.flatten(arrays)}
    if len(counts) != 1:
        raise ConfigError(
            f"x has arrays of different lengths {sorted(counts)}; give one row per example to each."
        )
    return arrays, counts.pop(), None


def _batches(arrays, batch: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(arrays).batch(batch)


def _local_predict(model, strategy, dataset) -> list:
    """Outputs of each batch of `dataset`, replica by replica, in order."""
    step = tf.function(lambda batch: strategy.run(model.predict_step, args=((batch,),)))
    parts = []
    for batch in strategy.experimental_distribute_dataset(dataset):
        for local in strategy.experimental_local_results(step(batch)):
            parts.append(tf.nest.map_structure(np.asarray, local))
    return parts


def _concat(parts: list):
    """Outputs of consecutive parts → one array per output."""
    return tf.nest.map_structure(lambda *leaves: np.concatenate(leaves), *parts)


def _coordinator_predict(model, arrays, batch: int):
    step = tf.function(model.predict_step)
    outputs = [tf.nest.map_structure(np.asarray, step((b,))) for b in _batches(arrays, batch)]
    return tf.nest.map_structure(lambda *parts: np.concatenate(parts), *outputs)


def _gather_blocks(distribution, block, counts):
    """All workers' blocks, in worker order, padded to the longest then trimmed."""
    strategy = distribution.strategy
    longest = max(counts)

    def pad(array):
        rows = longest - len(array)
        return np.concatenate([array, np.zeros((rows,) + array.shape[1:], array.dtype)])

    padded = tf.nest.map_structure(pad, block)
    gathered = strategy.run(
        lambda value: tf.nest.map_structure(
            lambda t: tf.distribute.get_replica_context().all_gather(t, axis=0), value
        ),
        args=(tf.nest.map_structure(tf.constant, padded),),
    )
    gathered = tf.nest.map_structure(
        lambda value: np.asarray(strategy.experimental_local_results(value)[0]), gathered
    )
    return tf.nest.map_structure(
        lambda array: np.concatenate(
            [array[i * longest : i * longest + n] for i, n in enumerate(counts)]
        ),
        gathered,
    )


def predict_arrays(model, distribution, x, *, batch_size: int | None):
    """The model's outputs for every example of `x`, in order, on every worker."""
    arrays, rows, dataset_batch = _inputs(x)
    batch = dataset_batch or check_batch_size(batch_size)
    if distribution.is_async:
        return _coordinator_predict(model, arrays, batch)
    workers = distribution.num_workers
    if workers == 1:
        return _concat(_local_predict(model, distribution.strategy, _batches(arrays, batch)))
    size = math.ceil(rows / workers)
    counts = [max(0, min(size, rows - i * size)) for i in range(workers)]
    index = distribution.input_pipeline_id
    block = tf.nest.map_structure(lambda a: a[index * size : index * size + counts[index]], arrays)
    local_batch = max(1, batch // workers)
    direct = distribution.direct_input_context() is not None
    if direct:
        step = tf.function(model.predict_step)
        parts = [
            tf.nest.map_structure(np.asarray, step((b,))) for b in _batches(block, local_batch)
        ]
        outputs = _concat(parts) if parts else _empty_outputs(model, block)
    else:
        outputs = _concat(
            _local_predict(model, distribution.strategy, _batches(block, local_batch))
        )
    return _gather_blocks(distribution, outputs, counts)


def _empty_outputs(model, block):
    """Zero-row outputs of the right shapes, for a worker whose block is empty."""
    sample = tf.nest.map_structure(lambda a: np.zeros((1,) + a.shape[1:], a.dtype), block)
    outputs = tf.nest.map_structure(np.asarray, model.predict_step((sample,)))
    return tf.nest.map_structure(lambda a: a[:0], outputs)
