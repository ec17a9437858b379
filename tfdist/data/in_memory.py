"""Training batches of an input pipeline's part held in memory: a permutation per pass.

When a pipeline's decoded part fits in memory (`tfdist.data.sharding.fits_in_memory`),
it is read once into one table, a nest of tensors with a leading `[examples]`
axis. Each pass is then a seeded permutation of the table's rows, and a batch is one
`tf.gather` per feature of a slice of row indices. This replaces a per-example
`shuffle` + `batch`, whose per-element work takes CPU time from the training step
of a small model (`benchmarks/input_pipeline.py` measures both).

The stream is the one `shuffle().take(epoch_examples).repeat().batch(batch)` gives:
pass `i` is the first `min(rows, epoch_examples)` rows of permutation `i`, passes
follow one another and batches are cut from the stream; so a part larger than an
epoch leaves other rows out each epoch, and a smaller one starts its next pass within
the epoch (never a row twice within a pass).

Dealt (`deal=P`, the `data` policy of the sync strategies when the whole split fits):
the table is the whole split, each pass is one seeded permutation of it, the same on
every pipeline, and pipeline `p` keeps positions `p, p + P, ...` of it, as PyTorch's
`DistributedSampler` deals an epoch. Global step `t` then reads positions
`t * B .. (t + 1) * B - 1` of the pass's permutation whatever `P` is: a resumed run with
fewer workers (`--min_workers`) reads exactly the examples its epoch has left.
"""

from __future__ import annotations

import tensorflow as tf

_SEED_STRIDE = 1000  # seed * stride + pipeline: one seed per pipeline.


def _table(examples: tf.data.Dataset, max_rows: int) -> tf.data.Dataset:
    """One element: every example of `examples` stacked (read once, then cached)."""
    return examples.batch(max(max_rows, 1)).take(1).cache()


def _rows(table) -> tf.Tensor:
    return tf.shape(tf.nest.flatten(table)[0])[0]


def epochs_in_memory(
    examples: tf.data.Dataset,
    *,
    max_rows: int,
    batch: int,
    epoch_examples: int | None,
    shuffle: bool,
    seed: int,
    pipeline: int | tf.Tensor,
    deal: int = 1,
) -> tf.data.Dataset:
    """Batches of `batch` examples of the part, endlessly.

    Args:
      examples: the pipeline's part, decoded, in a fixed order (not cached: the table is);
        with `deal` above 1, the whole split.
      max_rows: an upper bound of the examples in `examples`.
      batch: examples per batch.
      epoch_examples: examples per epoch; a pass is at most this long (None: whole passes).
      shuffle: a new order each pass (seeded by `seed`, `pipeline` and the pass; by `seed`
        and the pass when dealt); else every pass starts again at the first row.
      seed: the run's data seed.
      pipeline: this pipeline's index (an int, or a tensor on a parameter-server worker).
      deal: pipelines a pass of the whole split is dealt among (see the module
        docstring); 1: `examples` is this pipeline's own part.
    """
    dealt = deal > 1
    base = tf.cast(seed * _SEED_STRIDE, tf.int64) + tf.cast(0 if dealt else pipeline, tf.int64)
    table = _table(examples, max_rows)

    def one_pass(number, rows_table):
        rows = _rows(rows_table)
        if shuffle:
            keys = tf.random.stateless_uniform(tf.reshape(rows, [1]), seed=tf.stack([base, number]))
            order = tf.argsort(keys, stable=True)
        else:
            order = tf.range(rows)
        if dealt:
            order = order[pipeline::deal]
        return order if epoch_examples is None else order[:epoch_examples]

    def cut(leftover, numbered_table):
        """Appends a pass to the indices left over; cuts whole batches from the front."""
        number, rows_table = numbered_table
        order = tf.concat([leftover, one_pass(number, rows_table)], 0)
        whole = tf.shape(order)[0] // batch * batch
        return order[whole:], (tf.reshape(order[:whole], [-1, batch]), rows_table)

    def gathered(index_batches, rows_table):
        return tf.data.Dataset.from_tensor_slices(index_batches).map(
            lambda index: tf.nest.map_structure(lambda t: tf.gather(t, index), rows_table)
        )

    # The table is read once and shared. An empty part gives no passes: the stream ends
    # (an error, as the cardinality is asserted infinite) instead of spinning. Declared
    # infinite, a distributed iterator skips its per-step end-of-data agreement.
    passes = tf.data.Dataset.zip(tf.data.Dataset.counter(), table.repeat())
    batches = passes.scan(tf.zeros([0], tf.int32), cut).flat_map(gathered)
    return batches.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
