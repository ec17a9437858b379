"""Each replica's share of a global batch, padded to one size and counted.

Owns how a stream of global batches (the batches Keras' fit would train on, one device)
becomes per-replica batches for the synchronous strategies, so that every step trains on
exactly the global batch Keras would: a global batch of `m` rows is cut into
`ceil(m / R)` rows per replica for `R` replicas, replica `g` taking rows `g*b .. g*b+b-1`;
a replica whose rows run past `m` (the partial last batch of an epoch) gets the rows it
has, padded to `b` with copies of the batch's last row, so no replica ever gets an empty
batch. Each element says how many of its rows are real and how many the global batch has
(`meta = [n, m]`): the step trains on the real rows only and weighs each replica's loss
`n * R / m`, which makes the summed gradient the mean over the `m` examples, as one
device's. Every worker reads every global batch and keeps its replicas' rows, so each
example is used once per epoch on exactly one replica. Which batches a stream holds is
`tfdist.data.global_batches`'.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

BATCH = "tfdist_batch"  # An element's rows, as the source gives a batch.
META = "tfdist_meta"  # [real rows of this replica's share, rows of the global batch].


def is_metered(element: object) -> bool:
    """Whether `element` is a per-replica batch made here (rows and their count)."""
    return isinstance(element, dict) and META in element and BATCH in element


def _rows(batch: object) -> tf.Tensor:
    first = tf.nest.flatten(batch, expand_composites=False)[0]
    if isinstance(first, tf.RaggedTensor):
        return tf.cast(first.nrows(), tf.int32)
    return tf.shape(first)[0]


def share(batch: object, *, replica: int | tf.Tensor, num_replicas: int) -> dict:
    """Replica `replica`'s share of the global `batch`, padded, with its counts."""
    rows = _rows(batch)
    size = (rows + num_replicas - 1) // num_replicas
    start = tf.cast(replica, tf.int32) * size
    real = tf.clip_by_value(rows - start, 0, size)
    index = tf.minimum(start + tf.range(size), rows - 1)
    part = tf.nest.map_structure(lambda t: tf.gather(t, index), batch)
    return {BATCH: part, META: tf.stack([real, rows])}


def per_replica(
    global_batches: tf.data.Dataset, *, num_replicas: int, first_replica: int, local_replicas: int
) -> tf.data.Dataset:
    """This input pipeline's elements: for each global batch, one share per local replica.

    Args:
      global_batches: the global batches, in order.
      num_replicas: replicas over all workers.
      first_replica: the global index of this pipeline's first replica.
      local_replicas: replicas this pipeline feeds (its elements go to them in turn).
    """

    def shares(batch: object) -> tf.data.Dataset:
        parts = [
            share(batch, replica=first_replica + j, num_replicas=num_replicas)
            for j in range(local_replicas)
        ]
        dataset = tf.data.Dataset.from_tensors(parts[0])
        for part in parts[1:]:
            dataset = dataset.concatenate(tf.data.Dataset.from_tensors(part))
        return dataset

    if local_replicas == 1:
        return global_batches.map(
            lambda *batch: share(_one(batch), replica=first_replica, num_replicas=num_replicas)
        )
    return global_batches.flat_map(lambda *batch: shares(_one(batch)))


def _one(args: tuple) -> object:
    """A dataset element as one value (`map` spreads a tuple element over arguments)."""
    return args[0] if len(args) == 1 else args


def real_rows(element: dict) -> tuple[object, tf.Tensor, tf.Tensor, Callable]:
    """`(rows, real, global_rows, keep)` of a per-replica element: `keep(t)` slices any
    tensor with a leading batch axis (the rows, or the model's outputs) to the real rows."""
    real, total = element[META][0], element[META][1]

    def keep(tensors: object) -> object:
        return tf.nest.map_structure(lambda t: None if t is None else t[:real], tensors)

    return element[BATCH], real, total, keep
