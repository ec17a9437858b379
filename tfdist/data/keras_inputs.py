"""What Keras' `fit`/`evaluate`/`predict` accept, turned into the data layer's sources.

Owns the translation of Keras-style inputs into `DataSource`s: NumPy arrays, or dicts
and lists of them, for `x` and `y` (any dtype: float, integer, one-hot, multi-label,
strings for a `TextVectorization` layer inside the model), `sample_weight`,
`class_weight` (turned into sample weights as Keras does), `validation_split` (the
last fraction of the arrays, before shuffling, as Keras takes it) and
`validation_data`; and a batched `tf.data.Dataset`, whose batch is the global
batch. A source's records are `(x, y)` or `(x, y, sample_weight)`, so sharding,
shuffling, exact resume and the tf.data service apply to them as to every other
source. Batching per replica and epochs belong to `tfdist.data.pipeline`.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tfdist.config import ConfigError, check_positive
from tfdist.data.global_batches import (
    GlobalBatches,
    adapter_batches,
    array_batches,
    dataset_batches,
    is_keras_stream,
)
from tfdist.data.sources import DataSource, HeldArrays, SplitReader, chunked

_DATASET_TYPES = (tf.data.Dataset,)


class KerasArrays(SplitReader):
    """A split of Keras-style arrays: records `(x, y)` or `(x, y, sample_weight)`."""

    def __init__(self, record, *, what: str):
        leaves = [leaf for leaf in tf.nest.flatten(record) if leaf is not None]
        super().__init__(
            what=what,
            num_examples=len(leaves[0]),
            example_bytes=sum(leaf[:1].nbytes for leaf in leaves) or 1,
        )
        self.record = record
        self._held = HeldArrays(record)

    def records(self, files=None, *, keyed=False):
        dataset = self._held.slices()
        if not keyed:
            return dataset
        return dataset.enumerate().map(lambda index, rec: (tf.strings.as_string(index), rec))

    def service_records(self):
        return chunked(self.record, self.num_examples)


class DatasetSplit(SplitReader):
    """A split read from a user's batched `tf.data.Dataset`, unbatched into examples."""

    def __init__(self, dataset: tf.data.Dataset, *, what: str, num_examples: int):
        super().__init__(what=what, num_examples=num_examples, example_bytes=1 << 30)
        self.dataset = dataset

    def records(self, files=None, *, keyed=False):
        examples = self.dataset.unbatch()
        if keyed:
            return examples.enumerate().map(lambda i, rec: (tf.strings.as_string(i), rec))
        return examples


def is_dataset(value) -> bool:
    return isinstance(value, _DATASET_TYPES)


def _as_array(value, what: str):
    if value is None:
        return None
    if isinstance(value, tf.Tensor):
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype == object:
        try:
            array = array.astype(str)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{what} holds Python objects of mixed types; give a NumPy array "
                "of numbers or strings."
            ) from None
    if array.dtype == np.float64:
        array = array.astype(np.float32)  # As Keras does: float64 arrays train as floatx.
    if array.ndim == 0:
        raise ConfigError(f"{what} is a scalar ({array!r}); give one row per example.")
    return array


def _structure(value, what: str):
    """Arrays, lists/tuples or dicts of arrays, as a nest of NumPy arrays."""
    if isinstance(value, dict):
        return {key: _as_array(item, f"{what}[{key!r}]") for key, item in value.items()}
    if (
        isinstance(value, (list, tuple))
        and value
        and not np.isscalar(value[0])
        and np.ndim(value[0]) > 0
    ):
        # A tuple, not a list: tf.data would stack a list of arrays into one tensor.
        return tuple(_as_array(item, f"{what}[{index}]") for index, item in enumerate(value))
    return _as_array(value, what)


def _rows(nest, what: str) -> int:
    leaves = [leaf for leaf in tf.nest.flatten(nest) if leaf is not None]
    if not leaves:
        raise ConfigError(f"{what} is empty; give at least one array.")
    counts = {len(leaf) for leaf in leaves}
    if len(counts) != 1:
        raise ConfigError(
            f"{what} has arrays of different lengths {sorted(counts)}; every "
            "array must hold one row per example."
        )
    return counts.pop()


def class_weights_to_sample_weights(y, class_weight: dict) -> np.ndarray:
    """One weight per example from its class, as Keras computes it (one-hot: argmax)."""
    if isinstance(y, (dict, list)):
        raise ConfigError(
            "class_weight needs a single target array; for several outputs "
            "pass sample_weight instead."
        )
    labels = np.asarray(y)
    if labels.ndim > 1:
        labels = np.argmax(labels, axis=-1) if labels.shape[-1] != 1 else labels[..., 0]
    labels = np.round(labels).astype(np.int64)
    return np.array([class_weight.get(int(label), 1.0) for label in labels], np.float32)


def _record(x, y, sample_weight, class_weight, what: str):
    x = _structure(x, f"{what} x")
    y = _structure(y, f"{what} y") if y is not None else None
    if class_weight is not None:
        if sample_weight is not None:
            raise ConfigError(
                "class_weight and sample_weight were both given; Keras takes "
                "one of them: fold the class weights into sample_weight."
            )
        if y is None:
            raise ConfigError("class_weight needs targets y.")
        sample_weight = class_weights_to_sample_weights(y, class_weight)
    sample_weight = _structure(sample_weight, f"{what} sample_weight")
    rows = {"x": _rows(x, f"{what} x")}
    if y is not None:
        rows["y"] = _rows(y, f"{what} y")
    if sample_weight is not None:
        rows["sample_weight"] = _rows(sample_weight, f"{what} sample_weight")
    if len(set(rows.values())) != 1:
        listed = ", ".join(f"{key} has {count}" for key, count in rows.items())
        raise ConfigError(
            f"{what} arrays have different numbers of rows ({listed}); give "
            "one row per example to each."
        )
    record = (x,) if y is None else (x, y)
    return record + ((sample_weight,) if sample_weight is not None else ())


def _split(record, fraction: float):
    rows = _rows(record, "the arrays")
    split_at = int(math.floor(rows * (1.0 - fraction)))
    if split_at in (0, rows):
        raise ConfigError(
            f"validation_split ({fraction}) leaves {split_at} of {rows} examples for "
            "training; pick a fraction that leaves both splits at least one example."
        )
    head = tf.nest.map_structure(lambda a: a[:split_at], record)
    tail = tf.nest.map_structure(lambda a: a[split_at:], record)
    return head, tail


def dataset_batch_size(dataset: tf.data.Dataset) -> int | None:
    """The batch size a batched dataset was made with, looking through map/prefetch/..."""
    current = dataset
    while current is not None:
        if "Unbatch" in type(current).__name__:
            return None
        size = getattr(current, "_batch_size", None)
        if size is not None:
            return int(tf.get_static_value(size))
        current = getattr(current, "_input_dataset", None)
    return None


def _dataset_examples(dataset: tf.data.Dataset, batch: int, what: str) -> int:
    count = int(dataset.cardinality())
    if count == tf.data.INFINITE_CARDINALITY:
        raise ConfigError(
            f"{what} repeats forever; pass steps_per_epoch, or drop .repeat() "
            "so tfdist counts its batches."
        )
    if count == tf.data.UNKNOWN_CARDINALITY:
        count = int(dataset.reduce(np.int64(0), lambda n, _: n + 1))
    return count * batch


def dataset_source(dataset, *, validation=None, what: str = "dataset") -> tuple:
    """`(DataSource, global batch)` of a batched `tf.data.Dataset` (and its validation)."""
    batch = dataset_batch_size(dataset)
    if batch is None:
        raise ConfigError(
            f"{what} is not batched; batch it with the global batch size, e.g. "
            "dataset.batch(64), as Keras' fit expects."
        )
    splits = {
        "train": DatasetSplit(
            dataset, what=what, num_examples=_dataset_examples(dataset, batch, what)
        )
    }
    if validation is not None:
        splits["validation"] = validation_split_reader(validation, batch)
    return DataSource(what, (), None, splits), batch


def validation_split_reader(validation, batch: int | None) -> SplitReader:
    """The reader of `validation_data`: a dataset, or a tuple of arrays."""
    if is_dataset(validation):
        size = dataset_batch_size(validation)
        if size is None:
            raise ConfigError(
                "validation_data is an unbatched dataset; batch it, e.g. validation_data.batch(64)."
            )
        return DatasetSplit(
            validation,
            what="validation_data",
            num_examples=_dataset_examples(validation, size, "validation_data"),
        )
    if not isinstance(validation, (tuple, list)) or len(validation) not in (2, 3):
        raise ConfigError(
            f"validation_data ({type(validation).__name__}) must be (x, y), "
            "(x, y, sample_weight) or a batched tf.data.Dataset."
        )
    return KerasArrays(
        _record(*validation, *(None,) * (3 - len(validation)), None, "validation_data"),
        what="validation_data",
    )


def arrays_source(
    x,
    y=None,
    *,
    sample_weight=None,
    class_weight=None,
    validation_split: float = 0.0,
    validation_data=None,
    name: str = "arrays",
) -> DataSource:
    """A source of Keras-style arrays, with the validation split Keras' fit would make.

    Args:
      x: an array, a list of arrays (several inputs) or a dict of them (named inputs).
      y: targets of any kind: class indices, one-hot or multi-label rows, floats for
        regression, or a list/dict of them (several outputs); None when the model's
        loss needs none.
      sample_weight: one weight per example (or a list/dict per output).
      class_weight: `{class: weight}`; each example is weighted by its class.
      validation_split: the fraction of the arrays, taken from their end, kept for
        validation.
      validation_data: `(x, y)`, `(x, y, sample_weight)` or a batched dataset.
      name: the source's name in messages.
    """
    if not 0.0 <= validation_split < 1.0:
        raise ConfigError(f"validation_split ({validation_split}) must be in [0, 1).")
    record = _record(x, y, sample_weight, class_weight, "fit")
    splits = {}
    if validation_split:
        record, held_out = _split(record, validation_split)
        splits["validation"] = KerasArrays(held_out, what="validation_split arrays")
    if validation_data is not None:
        splits["validation"] = validation_split_reader(validation_data, None)
    splits["train"] = KerasArrays(record, what=f"{name} x")
    return DataSource(name, (), None, splits)


def inference_source(x, y=None, *, sample_weight=None, name: str) -> DataSource:
    """A source of one `train` split for `evaluate`/`predict` (no shuffling)."""
    if is_dataset(x):
        source, _ = dataset_source(x, what=name)
        return source
    return DataSource(
        name,
        (),
        None,
        {"train": KerasArrays(_record(x, y, sample_weight, None, name), what=f"{name} x")},
    )


def check_batch_size(batch_size, default: int = 32) -> int:
    """Keras' default global batch (32) when None; else a positive int."""
    if batch_size is None:
        return default
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise ConfigError(f"batch_size ({batch_size!r}) must be a positive integer.")
    return check_positive("batch_size", batch_size)


# ----- Keras' global batches (the synchronous strategies' front door) -----------------------
def _packed(record: tuple) -> object:
    """A record `(x, y[, sample_weight])` as Keras packs a batch: `x` alone without targets."""
    return keras.utils.pack_x_y_sample_weight(*record)


def is_keras_input(x: object) -> bool:
    """Whether `x` is a dataset, a PyDataset or a generator (not arrays)."""
    return is_dataset(x) or is_keras_stream(x)


def global_batches_of(
    x: object,
    y: object = None,
    *,
    sample_weight: object = None,
    class_weight: dict | None = None,
    batch_size: int | None,
    shuffle: bool | str,
    seed: int,
    name: str,
) -> GlobalBatches:
    """The global batches Keras' fit, evaluate or predict would read from these inputs.

    Arrays are batched here (`batch_size`, Keras' default 32); a dataset's, PyDataset's or
    generator's own batches are the global batches (`batch_size` must be None then).
    """
    if is_dataset(x) or is_keras_stream(x):
        kind = "a tf.data.Dataset" if is_dataset(x) else f"a {type(x).__name__}"
        for given, what in ((y, "y="), (sample_weight, "sample_weight=")):
            if given is not None:
                raise ConfigError(
                    f"{name} is {kind}: give its targets and weights inside its batches "
                    f"((x, y) or (x, y, sample_weight)), not as {what}"
                )
        if batch_size is not None:
            raise ConfigError(
                f"{name} is {kind}: its batches are the global batches; drop batch_size=."
            )
        if is_dataset(x):
            if class_weight is not None:
                raise ConfigError(
                    f"{name} is a tf.data.Dataset: give class weights as the sample weights of "
                    "its batches, not as class_weight=."
                )
            return dataset_batches(x, name=name)
        return adapter_batches(x, shuffle=bool(shuffle), class_weight=class_weight, name=name)
    record = _record(x, y, sample_weight, class_weight, name)
    return array_batches(
        _packed(record),
        batch_size=check_batch_size(batch_size),
        shuffle=shuffle,
        seed=seed,
        name=name,
    )


def split_for_validation(x: object, y: object, sample_weight: object, fraction: float) -> tuple:
    """Keras' `validation_split`: `(x, y, sample_weight)` of training and of validation,
    the validation part the last `fraction` of the arrays, taken before any shuffling."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"validation_split ({fraction}) must be in [0, 1).")
    if is_keras_input(x):
        raise ConfigError(
            "validation_split needs arrays; with a dataset, PyDataset or generator pass "
            "validation_data= instead."
        )
    record = _record(x, y, sample_weight, None, "fit")
    head, tail = _split(record, fraction)
    pad = (None,) * (3 - len(head))
    return head + pad, tail + pad


def validation_batches_of(
    validation_data: object, *, batch_size: int | None, seed: int
) -> GlobalBatches:
    """The global batches of Keras' `validation_data`: `(x, y[, sample_weight])` arrays
    (batched at `batch_size`), or a dataset, PyDataset or generator."""
    name = "validation_data"
    if is_keras_input(validation_data):
        return global_batches_of(
            validation_data, batch_size=None, shuffle=False, seed=seed, name=name
        )
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ConfigError(
            f"validation_data ({type(validation_data).__name__}) must be (x, y), "
            "(x, y, sample_weight), a batched tf.data.Dataset, a PyDataset or a generator."
        )
    x, y, *rest = validation_data
    return global_batches_of(
        x,
        y,
        sample_weight=rest[0] if rest else None,
        batch_size=batch_size,
        shuffle=False,
        seed=seed,
        name=name,
    )
