"""The global batches Keras' fit would train on, for every input `Model.fit` takes.

Owns turning Keras' inputs into one stream of global batches with Keras' batching, and
the `EpochPlan` of their epochs: NumPy arrays (dicts and lists of them, weights, the
partial last batch, `shuffle=True` or `"batch"`, a seeded new order each pass, the same
on every worker); a batched `tf.data.Dataset` (finite, `.repeat()`ed or endless, of any
nest of tensors, ragged ones included), whose batches are taken as they come; and
`keras.utils.PyDataset`s and Python generators, through Keras' own data adapters (their
`workers`, `use_multiprocessing` and `max_queue_size` included). A stream is the
source's passes back to back, so it goes on across epochs as Keras' iterator does. How a
global batch is shared among replicas is `tfdist.data.replica_batches`'; which steps an
epoch takes, `tfdist.data.epochs`'.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import tensorflow as tf

from tfdist.config import ConfigError
from tfdist.data.epochs import EpochPlan
from tfdist.data.replica_batches import BATCH, META

_SEED_STRIDE = 1000


@dataclasses.dataclass
class GlobalBatches:
    """A source of global batches and what is known of it.

    Attributes:
      name: the source in messages (`fit x`, `validation_data`).
      stream: `stream()` is a new dataset of the source's passes back to back (one pass
        only when `repeats` is False); its element is one global batch.
      one_pass: `one_pass()` is a new dataset of one pass (all of an endless source).
      num_batches: batches in one pass; None when unknown or endless.
      batch_size: rows of a full batch when known (examples/s are counted from it).
      endless: one pass never ends.
      repeats: a pass can be read again (a generator cannot).
      on_epoch_begin, on_epoch_end: the source's own epoch hooks (a PyDataset's).
      shares: `shares(num_replicas=, first_replica=, local_replicas=, repeat=)`, when the
        source can cut its replicas' shares itself (arrays: only the rows a worker keeps
        are gathered), the elements `tfdist.data.replica_batches.per_replica` would make.
      close: stops what reads the source ahead (a PyDataset's worker threads or processes,
        which would otherwise outlive the fit and hold the process at exit).
      prefetch: whether tf.data may read ahead of the step; False where the source reads
        ahead itself (a PyDataset's workers, as Keras' adapter says), so that nothing asks
        for a batch the fit will not train on.
    """

    name: str
    stream: Callable[[], tf.data.Dataset]
    one_pass: Callable[[], tf.data.Dataset]
    num_batches: int | None
    batch_size: int | None = None
    endless: bool = False
    repeats: bool = True
    on_epoch_begin: Callable[[], None] = lambda: None
    on_epoch_end: Callable[[], None] = lambda: None
    shares: Callable[..., tf.data.Dataset] | None = None
    close: Callable[[], None] = lambda: None
    prefetch: bool = True

    def plan(self, steps_per_epoch: int | None) -> EpochPlan:
        return EpochPlan(self.num_batches, steps_per_epoch, endless=self.endless)

    def element_spec(self) -> object:
        return self.stream().element_spec


def _rows(nest: object) -> int:
    leaves = [leaf for leaf in tf.nest.flatten(nest) if leaf is not None]
    return len(leaves[0]) if leaves else 0


def array_batches(
    record: object, *, batch_size: int, shuffle: bool | str, seed: int, name: str
) -> GlobalBatches:
    """Batches of `batch_size` rows of the arrays `record`, the last one partial.

    `shuffle=True` gives each pass its own seeded order of the rows (the same on every
    worker); `"batch"` shuffles the order of whole batches instead; False keeps the rows'
    order.
    """
    rows = _rows(record)
    if rows == 0:
        raise ConfigError(f"{name} has no rows; give at least one example.")
    count = math.ceil(rows / batch_size)
    held: list = []

    def tensors() -> object:
        if not tf.executing_eagerly():  # Inside a trace: the arrays become constants.
            return tf.nest.map_structure(tf.convert_to_tensor, record)
        if not held:  # Converted once and shared by every stream of this source.
            held.append(tf.nest.map_structure(tf.convert_to_tensor, record))
        return held[0]

    def order_of(number: tf.Tensor) -> tf.Tensor:
        """The rows of pass `number`, in the order they are read."""
        key = tf.stack([tf.constant(seed * _SEED_STRIDE, tf.int64), number])
        if shuffle == "batch":
            return _batch_rows(_permutation(count, key), batch_size, rows)
        if shuffle:
            return _permutation(rows, key)
        return tf.range(rows)

    def passes(each_pass: Callable[[tf.Tensor], tf.data.Dataset], repeat: bool) -> tf.data.Dataset:
        numbers = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)
        return numbers.flat_map(each_pass)

    def stream() -> tf.data.Dataset:
        table = tensors()

        def one_pass(number: tf.Tensor) -> tf.data.Dataset:
            order = order_of(number)

            def gathered(index: tf.Tensor) -> object:
                picked = order[index * batch_size : tf.minimum((index + 1) * batch_size, rows)]
                return tf.nest.map_structure(lambda t: tf.gather(t, picked), table)

            return tf.data.Dataset.range(count).map(gathered)

        return passes(one_pass, repeat=True)

    def shares(
        *, num_replicas: int, first_replica: int, local_replicas: int, repeat: bool
    ) -> tf.data.Dataset:
        table = tensors()

        def one_pass(number: tf.Tensor) -> tf.data.Dataset:
            order = order_of(number)

            def share(index: tf.Tensor, replica: tf.Tensor) -> dict:
                start = tf.cast(index, tf.int32) * batch_size
                stop = tf.minimum(start + batch_size, rows)
                size = (stop - start + num_replicas - 1) // num_replicas
                first = start + tf.cast(replica, tf.int32) * size
                real = tf.clip_by_value(stop - first, 0, size)
                picked = tf.gather(order, tf.minimum(first + tf.range(size), stop - 1))
                part = tf.nest.map_structure(lambda t: tf.gather(t, picked), table)
                return {BATCH: part, META: tf.stack([real, stop - start])}

            steps = tf.data.Dataset.range(count)
            if local_replicas == 1:
                return steps.map(lambda index: share(index, first_replica))
            return steps.flat_map(
                lambda index: tf.data.Dataset.range(
                    first_replica, first_replica + local_replicas
                ).map(lambda replica: share(index, replica))
            )

        return passes(one_pass, repeat)

    return GlobalBatches(
        name=name,
        stream=stream,
        one_pass=lambda: stream().take(count),
        num_batches=count,
        batch_size=batch_size,
        shares=shares,
    )


def _permutation(size: int, key: tf.Tensor) -> tf.Tensor:
    values = tf.random.stateless_uniform([size], seed=key)
    return tf.argsort(values, stable=True)


def _batch_rows(batch_order: tf.Tensor, batch_size: int, rows: int) -> tf.Tensor:
    """The row indices of the batches in `batch_order`, batch after batch."""
    starts = batch_order * batch_size
    ends = tf.minimum(starts + batch_size, rows)
    return tf.ragged.range(starts, ends).flat_values


def dataset_batches(dataset: tf.data.Dataset, *, name: str) -> GlobalBatches:
    """The batches of a user's batched `tf.data.Dataset`, as they come."""
    cardinality = int(dataset.cardinality())
    if cardinality == 0:
        raise ConfigError(f"{name} is an empty dataset; give it at least one batch.")
    _check_batched(dataset, name)
    endless = cardinality == tf.data.INFINITE_CARDINALITY
    known = cardinality >= 0
    return GlobalBatches(
        name=name,
        stream=lambda: dataset if endless else dataset.repeat(),
        one_pass=lambda: dataset,
        num_batches=cardinality if known else None,
        batch_size=_static_batch(dataset),
        endless=endless,
    )


def _check_batched(dataset: tf.data.Dataset, name: str) -> None:
    """Each element of a dataset Keras trains on is a batch: no scalar parts, and the
    parts' first dimensions, where known, agree."""
    specs = [spec for spec in tf.nest.flatten(dataset.element_spec) if hasattr(spec, "shape")]
    scalar = any(spec.shape.rank == 0 for spec in specs)
    rows = {spec.shape[0] for spec in specs if spec.shape.rank and spec.shape[0] is not None}
    if scalar or len(rows) > 1:
        raise ConfigError(
            f"{name} is not batched; batch it with the global batch size, e.g. "
            "dataset.batch(64), as Keras' fit expects (its elements "
            f"{_shapes(specs)} are not batches of one size)."
        )


def _shapes(specs: list) -> str:
    return ", ".join(str(tuple(spec.shape)) for spec in specs)


def _static_batch(dataset: tf.data.Dataset) -> int | None:
    first = tf.nest.flatten(dataset.element_spec)[0]
    shape = getattr(first, "shape", None)
    return shape[0] if shape is not None and shape.rank else None


def adapter_batches(
    x: object, *, shuffle: bool, class_weight: dict | None, name: str
) -> GlobalBatches:
    """A `keras.utils.PyDataset` or Python generator, through Keras' own adapter."""
    from keras.src.trainers.data_adapters import get_data_adapter

    adapter = get_data_adapter(x, shuffle=shuffle, class_weight=class_weight)
    dataset = adapter.get_tf_dataset()
    num_batches = adapter.num_batches
    is_py_dataset = hasattr(x, "on_epoch_end") and hasattr(x, "num_batches")
    endless = is_py_dataset and num_batches is None
    return GlobalBatches(
        name=name,
        stream=lambda: dataset if (endless or not is_py_dataset) else dataset.repeat(),
        one_pass=lambda: dataset,
        num_batches=num_batches,
        endless=endless,
        repeats=is_py_dataset,
        on_epoch_begin=x.on_epoch_begin if is_py_dataset else (lambda: None),
        on_epoch_end=x.on_epoch_end if is_py_dataset else (lambda: None),
        close=lambda: _stop_readers(adapter),
        # With workers, Keras' adapter turns tf.data's read-ahead off (the workers read
        # ahead): a read-ahead past an epoch's last batch starts the next pass, and past the
        # fit's last a new pool of worker processes, ended as it starts (a pool terminated
        # while its workers start can hang; its generator's iterator, torn down before its
        # first read, makes tf.data log a KeyError).
        prefetch=getattr(adapter, "enqueuer", None) is None,
    )


def _stop_readers(adapter: object) -> None:
    """Stops a PyDataset adapter's worker threads or processes (a generator has none)."""
    enqueuer = getattr(adapter, "enqueuer", None)
    if enqueuer is not None:
        enqueuer.stop()


def is_keras_stream(x: object) -> bool:
    """Whether `x` is a PyDataset or a generator (Keras adapts them, not tfdist)."""
    import inspect

    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDataset

    return isinstance(x, PyDataset) or inspect.isgenerator(x)
