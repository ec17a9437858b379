"""Sources: what a dataset holds and how to read each of its splits.

This module owns the `DataSource` contract (a dataset's shape, classes and one
`SplitReader` per split) and the sources kept in memory or generated: the
bundled `digits`, `synthetic` and `interactions` tasks, NumPy arrays
(`numpy_source`) and `.npz` files (`npz_source`). A reader gives a split's
records in a fixed order (optionally keyed by a stable example id) and how to
decode them; splitting records between workers is `tfdist.data.sharding`'s, files on
disk are `tfdist.data.files`', batching and epochs `tfdist.data.pipeline`'s.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from tfdist.config import ConfigError, check_positive
from tfdist.data.sharding import resolve_policy, sharded_examples

DIGITS_VALIDATION = 297  # of 1,797: leaves 1,500 for training.
SYNTHETIC_FEATURES, SYNTHETIC_CLASSES = 784, 10
INTERACTION_USERS, INTERACTION_ITEMS, INTERACTION_FACTORS = 600, 400, 8
_GENERATED_CHUNK = 1024
SERVICE_CHUNK = 256  # Examples per split a tf.data service worker asks the dispatcher for.


class SplitReader:
    """One split: its records in a fixed order and how to decode them.

    Attributes:
      what: the split as the user named it, for messages (`train_files 'a/*.csv'`).
      num_examples: examples in the split.
      example_bytes: bytes of one decoded example (decides caching).
      files: the split's files, in order, when it is read from files (else empty).
      decode: maps records to `(features, label)`; None when records are examples.
      batched_decode: `decode` takes a batch of records (vectorized) rather than one.
    """

    files: tuple = ()
    decode: Callable | None = None
    batched_decode: bool = True

    def __init__(self, *, what: str, num_examples: int, example_bytes: int):
        self.what = what
        self.num_examples = num_examples
        self.example_bytes = example_bytes

    def records(
        self, files: tf.data.Dataset | None = None, *, keyed: bool = False
    ) -> tf.data.Dataset:
        """The records of `files` (a dataset of file names; None: the whole split).

        With `keyed`, each element is `(key, record)`, `key` a string that names
        the example whatever the order of the data (`tfdist.data.sharding`'s `hash`).
        """
        raise NotImplementedError

    def service_records(self) -> tf.data.Dataset:
        """All records, from a source the tf.data service splits in coarse pieces.

        In `distributed_epoch` mode each element of the first dataset is a split the
        data worker fetches from the dispatcher; files are coarse already, single
        examples would cost one request each.
        """
        return self.records()

    def diagnose(self) -> str | None:
        """After a read error: which file fails and why (None when it cannot tell)."""
        return None


def chunked(values, count: int, chunk: int = SERVICE_CHUNK) -> tf.data.Dataset:
    """The rows of `values` (a nest of arrays), from a dataset of `chunk`-row pieces."""

    def rows(start):
        index = tf.range(start, tf.minimum(start + chunk, count))
        return tf.nest.map_structure(lambda array: tf.gather(array, index), values)

    return tf.data.Dataset.range(0, count, chunk).map(rows).unbatch()


class HeldArrays:
    """A nest of NumPy arrays a split holds, sliced into examples for its datasets.

    Building a dataset eagerly (every sync strategy) converts the arrays to tensors
    once and every later dataset shares them: `from_tensor_slices` of NumPy arrays copies
    them into each dataset (a 188 MB array once more for each dataset built, twice while
    it is built). Inside a trace (a parameter-server worker's dataset function) the
    arrays stay NumPy, so they become constants of the graph the workers receive.
    """

    def __init__(self, arrays):
        self.arrays = arrays
        self._tensors = None

    def slices(self) -> tf.data.Dataset:
        if not tf.executing_eagerly():
            return tf.data.Dataset.from_tensor_slices(self.arrays)
        if self._tensors is None:
            self._tensors = tf.nest.map_structure(tf.convert_to_tensor, self.arrays)
        return tf.data.Dataset.from_tensor_slices(self._tensors)


class ArraySplit(SplitReader):
    """A split held in memory as arrays (features may be a dict of arrays)."""

    def __init__(self, features, labels, *, what: str, ids: np.ndarray | None = None):
        leaves = tf.nest.flatten(features) + tf.nest.flatten(labels)
        super().__init__(
            what=what,
            num_examples=len(leaves[-1]),
            example_bytes=sum(a[:1].nbytes for a in leaves) or 1,
        )
        self._arrays = (features, labels)
        self._held = HeldArrays(self._arrays)
        self._ids = None if ids is None else np.asarray(ids).astype(str)

    def records(self, files=None, *, keyed=False):
        dataset = self._held.slices()
        if not keyed:
            return dataset
        if self._ids is not None:
            return tf.data.Dataset.zip(tf.data.Dataset.from_tensor_slices(self._ids), dataset)
        return dataset.enumerate().map(lambda index, record: (tf.strings.as_string(index), record))

    def service_records(self):
        return chunked(self._arrays, self.num_examples)


class GeneratedSplit(SplitReader):
    """Examples `start .. start + count - 1` made in the graph by `batch_fn(indices, seed)`."""

    def __init__(
        self, batch_fn, *, start: int, count: int, seed: int, what: str, example_bytes: int
    ):
        super().__init__(what=what, num_examples=count, example_bytes=example_bytes)
        self._batch_fn, self._start, self._seed = batch_fn, start, seed

    def records(self, files=None, *, keyed=False):
        indices = tf.data.Dataset.range(self._start, self._start + self.num_examples)
        chunks = indices.batch(_GENERATED_CHUNK)
        if keyed:
            return chunks.map(
                lambda i: (tf.strings.as_string(i), self._batch_fn(i, self._seed))
            ).unbatch()
        return chunks.map(lambda i: self._batch_fn(i, self._seed)).unbatch()

    def service_records(self):
        end = self._start + self.num_examples
        starts = tf.data.Dataset.range(self._start, end, _GENERATED_CHUNK)
        return starts.map(
            lambda s: self._batch_fn(tf.range(s, tf.minimum(s + _GENERATED_CHUNK, end)), self._seed)
        ).unbatch()


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A dataset: what its examples look like and a reader for each split.

    Attributes:
      name: the dataset's name.
      input_shape: shape of one example's features.
      num_classes: number of label classes.
      splits: `train` and, when there is one, `validation`, each a `SplitReader`.
      vocab_sizes: for id features (a dict of features), the number of ids of each.
    """

    name: str
    input_shape: tuple
    num_classes: int
    splits: Mapping[str, SplitReader]
    vocab_sizes: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @property
    def num_train(self) -> int:
        return self.splits["train"].num_examples

    @property
    def num_validation(self) -> int:
        split = self.splits.get("validation")
        return split.num_examples if split is not None else 0

    def split(self, name: str) -> SplitReader:
        if name not in self.splits:
            raise ConfigError(
                f"Dataset {self.name!r} has no {name!r} split (it has: "
                f"{', '.join(self.splits)}); for a file dataset pass {name}_files."
            )
        return self.splits[name]

    def read(
        self,
        split: str,
        context: tf.distribute.InputContext | None = None,
        *,
        shard_policy: str = "auto",
        seed: int = 0,
    ) -> tf.data.Dataset:
        """The split's unbatched `(features, label)` examples for `context`'s pipeline."""
        reader = self.split(split)
        pipelines = context.num_input_pipelines if context is not None else 1
        pipeline = context.input_pipeline_id if context is not None else 0
        policy = resolve_policy(
            shard_policy, num_files=len(reader.files), num_pipelines=pipelines, what=reader.what
        )
        return sharded_examples(
            reader, policy=policy, num_pipelines=pipelines, pipeline_id=pipeline, seed=seed
        )

    def diagnose(self) -> str | None:
        """After a read error: the first split file that fails and why, if one does."""
        for reader in self.splits.values():
            found = reader.diagnose()
            if found:
                return found
        return None


# ----- in-memory and generated sources ------------------------------------------------
def load_digits_arrays():
    """The 1,797 8×8 handwritten digits (UCI, as scikit-learn ships them), scaled to [0, 1]."""
    with importlib.resources.files("tfdist.resources").joinpath("digits.npz").open("rb") as f:
        arrays = np.load(f)
        images, labels = arrays["images"], arrays["labels"]
    return images.astype(np.float32) / 16.0, labels.astype(np.int32)


def digits_source() -> DataSource:
    images, labels = load_digits_arrays()
    order = np.random.default_rng(0).permutation(len(labels))  # fixed: the split never moves
    val, train = order[:DIGITS_VALIDATION], order[DIGITS_VALIDATION:]
    splits = {
        "train": ArraySplit(images[train], labels[train], what="digits train split"),
        "validation": ArraySplit(images[val], labels[val], what="digits validation split"),
    }
    return DataSource("digits", images.shape[1:], 10, splits)


def synthetic_batch(indices: tf.Tensor, seed: int, shape=(SYNTHETIC_FEATURES,)):
    """Examples `indices` of the synthetic task: uniform features of `shape`,
    label = argmax(x·W) over the flattened features."""
    size = int(np.prod(shape))
    features = tf.random.stateless_uniform(
        [tf.shape(indices)[0], size], seed=tf.stack([tf.cast(seed, tf.int64), indices[0]])
    )
    weights = tf.random.stateless_normal(
        [size, SYNTHETIC_CLASSES], seed=tf.constant([seed, -1], tf.int64)
    )
    labels = tf.argmax(tf.matmul(features - 0.5, weights), axis=1, output_type=tf.int32)
    if len(shape) > 1:
        features = tf.reshape(features, [-1, *shape])
    return features, labels


def interactions_batch(indices: tf.Tensor, seed: int):
    """Examples `indices` of the interactions task: does user u like item i?

    Users and items have hidden factor vectors (fixed by `seed`); the label is 1
    when their dot product is positive, so matrix factorization can learn it.
    """
    count = tf.shape(indices)[0]
    pair_seed = tf.stack([tf.cast(seed, tf.int64), indices[0]])
    users = tf.random.stateless_uniform(
        [count], pair_seed, maxval=INTERACTION_USERS, dtype=tf.int32
    )
    items = tf.random.stateless_uniform(
        [count], pair_seed + 1, maxval=INTERACTION_ITEMS, dtype=tf.int32
    )
    user_factors = tf.random.stateless_normal(
        [INTERACTION_USERS, INTERACTION_FACTORS], tf.constant([seed, -2], tf.int64)
    )
    item_factors = tf.random.stateless_normal(
        [INTERACTION_ITEMS, INTERACTION_FACTORS], tf.constant([seed, -3], tf.int64)
    )
    affinity = tf.reduce_sum(tf.gather(user_factors, users) * tf.gather(item_factors, items), 1)
    return {"user": users, "item": items}, tf.cast(affinity > 0, tf.int32)


def generated_source(name, batch_fn, num_examples, seed, *, example_bytes, **info) -> DataSource:
    """A source generated in the graph, chunk by chunk, from example indices."""
    check_positive("num_examples", num_examples)
    num_validation = max(1, num_examples // 10)
    splits = {
        "train": GeneratedSplit(
            batch_fn,
            start=0,
            count=num_examples,
            seed=seed,
            what=f"{name} train split",
            example_bytes=example_bytes,
        ),
        "validation": GeneratedSplit(
            batch_fn,
            start=num_examples,
            count=num_validation,
            seed=seed,
            what=f"{name} validation split",
            example_bytes=example_bytes,
        ),
    }
    return DataSource(name=name, splits=splits, **info)


def synthetic_source(num_examples: int, seed: int, image_shape=None) -> DataSource:
    """The synthetic task: 784 features, or images of `image_shape` (H, W, C) for a
    compute-heavy job (`cnn`); labels are a fixed random linear rule of the pixels."""
    shape = tuple(image_shape) if image_shape else (SYNTHETIC_FEATURES,)
    return generated_source(
        "synthetic",
        lambda i, s: synthetic_batch(i, s, shape),
        num_examples,
        seed,
        example_bytes=4 * int(np.prod(shape)) + 4,
        input_shape=shape,
        num_classes=SYNTHETIC_CLASSES,
    )


def interactions_source(num_examples: int, seed: int) -> DataSource:
    return generated_source(
        "interactions",
        interactions_batch,
        num_examples,
        seed,
        example_bytes=12,
        input_shape=(),
        num_classes=2,
        vocab_sizes={"user": INTERACTION_USERS, "item": INTERACTION_ITEMS},
    )


# ----- NumPy arrays and .npz files ----------------------------------------------------
def count_classes(labels: np.ndarray, num_classes: int | None, what: str) -> int:
    """`num_classes`, or the largest label + 1; labels must be ints in [0, num_classes)."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or not np.issubdtype(labels.dtype, np.integer)):
        raise ConfigError(
            f"{what} has labels that are not class indices (min {labels.min()!r}, dtype "
            f"{labels.dtype}); labels must be integers 0..num_classes-1."
        )
    top = int(labels.max()) + 1 if labels.size else 1
    if num_classes is not None and top > num_classes:
        raise ConfigError(
            f"{what} has label {top - 1} but num_classes is {num_classes}; pass "
            f"num_classes={top} or more."
        )
    return num_classes or top


def _model_features(arrays: Mapping[str, np.ndarray], what: str) -> np.ndarray:
    """One feature array: the only one kept, or several flattened and joined."""
    if not arrays:
        raise ConfigError(f"{what} holds only the label; add a features array.")
    if len(arrays) == 1:
        return np.asarray(next(iter(arrays.values())), np.float32)
    rows = {len(a) for a in arrays.values()}
    if len(rows) != 1:
        raise ConfigError(
            f"{what} has arrays of different lengths {sorted(rows)}; every "
            "array must hold one row per example."
        )
    return np.concatenate(
        [np.asarray(a, np.float32).reshape(len(a), -1) for _, a in sorted(arrays.items())], axis=1
    )


def _class_indices(labels) -> bool:
    """Labels that are one integer class per example (what `num_classes` counts)."""
    return (
        not isinstance(labels, (dict, list, tuple))
        and np.asarray(labels).ndim == 1
        and np.issubdtype(np.asarray(labels).dtype, np.integer)
    )


def numpy_source(
    features,
    labels,
    *,
    validation: tuple | None = None,
    ids: Sequence | None = None,
    num_classes: int | None = None,
    name: str = "numpy",
) -> DataSource:
    """A source from NumPy arrays (the Python API's `NumPy arrays`).

    Args:
      features: an array with one row per example, or a dict of them.
      labels: one target per example of any kind: integer class labels, one-hot or
        multi-label rows, floats (regression), or a dict/list of them (several outputs).
      validation: `(features, labels)` of a validation split, or None.
      ids: one id per training example; the `hash` policy hashes them, so an example
        keeps its worker whatever the order of the arrays. None: the row number.
      num_classes: label classes of integer class labels; None counts them (for other
        targets it is the last dimension of a single target array, else None).
      name: the source's name.
    """

    def as_labels(values):
        return tf.nest.map_structure(
            lambda a: (
                np.asarray(a).astype(np.int32)
                if _class_indices(a)
                else np.asarray(a, np.float32)
                if np.asarray(a).dtype == np.float64
                else np.asarray(a)
            ),
            values,
        )

    labels = as_labels(labels)
    rows = len(tf.nest.flatten(labels)[0])
    if ids is not None and len(ids) != rows:
        raise ConfigError(f"ids ({len(ids)}) must give one id per example ({rows}).")
    splits = {"train": ArraySplit(features, labels, ids=ids, what=f"{name} train arrays")}
    classes = [labels]
    if validation is not None:
        val_features, val_labels = validation
        classes.append(as_labels(val_labels))
        splits["validation"] = ArraySplit(
            val_features, classes[-1], what=f"{name} validation arrays"
        )
    if _class_indices(labels):
        num_classes = count_classes(np.concatenate(classes), num_classes, f"{name} arrays")
    elif not isinstance(labels, (dict, list, tuple)) and labels.ndim > 1:
        num_classes = num_classes or labels.shape[-1]
    first = tf.nest.map_structure(lambda a: np.asarray(a)[0], features)
    shape = () if isinstance(first, dict) else np.shape(first)
    return DataSource(name, tuple(shape), num_classes, splits)


def _load_npz(files: Sequence[str], *, label_key: str, id_key: str | None, flag: str):
    """Features, labels and ids of `files`, joined in file order."""
    parts = []
    for path in files:
        try:
            with tf.io.gfile.GFile(path, "rb") as f:
                arrays = dict(np.load(f, allow_pickle=False))
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"npz file {path!r} cannot be read ({error}); write it with "
                "numpy.savez and pass it in " + flag + "."
            ) from None
        if label_key not in arrays:
            raise ConfigError(
                f"npz file {path!r} has no array {label_key!r} (its arrays: "
                f"{', '.join(arrays)}); pass label_key='NAME' with one of them."
            )
        ids = arrays.pop(id_key) if id_key and id_key in arrays else None
        labels = arrays.pop(label_key)
        parts.append((_model_features(arrays, f"npz file {path!r}"), labels, ids))
    features = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    ids = None if any(p[2] is None for p in parts) else np.concatenate([p[2] for p in parts])
    if len(features) != len(labels):
        raise ConfigError(
            f"{flag} holds {len(features)} feature rows but {len(labels)} "
            "labels; give every example one label."
        )
    return features, labels, ids


def npz_source(
    *,
    train_files: Sequence[str],
    validation_files: Sequence[str] = (),
    label_key: str = "label",
    id_key: str | None = None,
    num_classes: int | None = None,
    name: str = "npz",
) -> DataSource:
    """A source from `.npz` files (`numpy.savez`), loaded whole into memory.

    Each file holds the label array `label_key` and one features array (several are
    flattened and joined), optionally ids under `id_key`; the files of a split are
    joined in order.
    """
    x, y, ids = _load_npz(train_files, label_key=label_key, id_key=id_key, flag="train_files")
    validation = None
    if validation_files:
        vx, vy, _ = _load_npz(
            validation_files, label_key=label_key, id_key=id_key, flag="validation_files"
        )
        validation = (vx, vy)
    return numpy_source(x, y, validation=validation, ids=ids, num_classes=num_classes, name=name)
