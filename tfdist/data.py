"""Data layer: named sources and the one dataset-function contract every strategy shares.

This module owns where examples come from (``digits``, ``synthetic``, any TFDS
name), how they are split between workers (sharding by
``tf.distribute.InputContext``), and the per-replica batch computed from the one
``global_batch_size``. A dataset function takes an ``InputContext`` and returns a
``tf.data.Dataset`` of per-replica batches of ``(features, labels)``; the trainer
hands it to ``distribute_datasets_from_function`` (sync strategies) or
``ClusterCoordinator.create_per_worker_dataset`` (parameter server).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from typing import Callable, Mapping, Optional

import numpy as np
import tensorflow as tf

from tfdist.config import ConfigError, check_positive, per_replica_batch_size

DatasetFn = Callable[[Optional[tf.distribute.InputContext]], tf.data.Dataset]
BUILTIN_DATASETS = ("digits", "synthetic", "interactions")
DIGITS_VALIDATION = 297  # of 1,797: leaves 1,500 for training.
SYNTHETIC_FEATURES, SYNTHETIC_CLASSES = 784, 10
INTERACTION_USERS, INTERACTION_ITEMS, INTERACTION_FACTORS = 600, 400, 8
_SHUFFLE_BUFFER = 100_000


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A named dataset: what its examples look like and how to read a split.

    Attributes:
      name: the dataset's name.
      input_shape: shape of one example's features.
      num_classes: number of label classes.
      num_train: examples in the training split.
      num_validation: examples in the validation split (0 when there is none).
      read: ``read(split, input_context)`` returns the split's unbatched
        ``(features, label)`` examples, already sharded for ``input_context``.
      vocab_sizes: for id features (a dict of features), the number of ids of each.
    """

    name: str
    input_shape: tuple
    num_classes: int
    num_train: int
    num_validation: int
    read: Callable[[str, Optional[tf.distribute.InputContext]], tf.data.Dataset]
    vocab_sizes: Mapping[str, int] = dataclasses.field(default_factory=dict)


def _shard(dataset: tf.data.Dataset, context) -> tf.data.Dataset:
    if context is None or context.num_input_pipelines == 1:
        return dataset
    return dataset.shard(context.num_input_pipelines, context.input_pipeline_id)


def load_digits_arrays():
    """The 1,797 8×8 handwritten digits (UCI, as scikit-learn ships them), scaled to [0, 1]."""
    with importlib.resources.files("tfdist.resources").joinpath("digits.npz").open("rb") as f:
        arrays = np.load(f)
        images, labels = arrays["images"], arrays["labels"]
    return images.astype(np.float32) / 16.0, labels.astype(np.int32)


def _digits_source() -> DataSource:
    images, labels = load_digits_arrays()
    order = np.random.default_rng(0).permutation(len(labels))  # fixed: the split never moves
    val, train = order[:DIGITS_VALIDATION], order[DIGITS_VALIDATION:]
    splits = {"train": (images[train], labels[train]),
              "validation": (images[val], labels[val])}

    def read(split, context):
        return _shard(tf.data.Dataset.from_tensor_slices(splits[split]), context)

    return DataSource("digits", images.shape[1:], 10, len(train), len(val), read)


def synthetic_batch(indices: tf.Tensor, seed: int):
    """Examples ``indices`` of the synthetic task: uniform features, label = argmax(x·W)."""
    features = tf.random.stateless_uniform(
        [tf.shape(indices)[0], SYNTHETIC_FEATURES],
        seed=tf.stack([tf.cast(seed, tf.int64), indices[0]]))
    weights = tf.random.stateless_normal(
        [SYNTHETIC_FEATURES, SYNTHETIC_CLASSES], seed=tf.constant([seed, -1], tf.int64))
    labels = tf.argmax(tf.matmul(features - 0.5, weights), axis=1, output_type=tf.int32)
    return features, labels


def interactions_batch(indices: tf.Tensor, seed: int):
    """Examples ``indices`` of the interactions task: does user u like item i?

    Users and items have hidden factor vectors (fixed by ``seed``); the label is 1
    when their dot product is positive, so matrix factorization can learn it.
    """
    count = tf.shape(indices)[0]
    pair_seed = tf.stack([tf.cast(seed, tf.int64), indices[0]])
    users = tf.random.stateless_uniform([count], pair_seed, maxval=INTERACTION_USERS,
                                        dtype=tf.int32)
    items = tf.random.stateless_uniform([count], pair_seed + 1, maxval=INTERACTION_ITEMS,
                                        dtype=tf.int32)
    user_factors = tf.random.stateless_normal([INTERACTION_USERS, INTERACTION_FACTORS],
                                              tf.constant([seed, -2], tf.int64))
    item_factors = tf.random.stateless_normal([INTERACTION_ITEMS, INTERACTION_FACTORS],
                                              tf.constant([seed, -3], tf.int64))
    affinity = tf.reduce_sum(tf.gather(user_factors, users) * tf.gather(item_factors, items), 1)
    return {"user": users, "item": items}, tf.cast(affinity > 0, tf.int32)


def _generated_source(name, batch_fn, num_examples, seed, **info) -> DataSource:
    """A source generated in the graph, chunk by chunk, from example indices."""
    check_positive("num_examples", num_examples)
    num_validation = max(1, num_examples // 10)
    chunk = 1024

    def read(split, context):
        start, count = (0, num_examples) if split == "train" else (num_examples, num_validation)
        indices = tf.data.Dataset.range(start, start + count).batch(chunk)
        examples = indices.map(lambda i: batch_fn(i, seed)).unbatch()
        return _shard(examples, context).cache()

    return DataSource(name=name, num_train=num_examples, num_validation=num_validation,
                      read=read, **info)


def _tfds_not_prepared(name: str, where: str) -> ConfigError:
    return ConfigError(
        f"TFDS dataset {name!r} is not prepared on disk (looked in {where}) and this machine "
        f"cannot download it; run `tfds build {name} --data_dir=DIR` where there is network, "
        "copy DIR here and pass --data_dir=DIR.")


def _tfds_source(name: str, data_dir: Optional[str]) -> DataSource:
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ConfigError(
            f"Unknown dataset {name!r}. Expected one of: {', '.join(BUILTIN_DATASETS)}, "
            "or a TFDS dataset name such as 'mnist'.") from None
    if not builder.is_prepared():
        raise _tfds_not_prepared(name, builder.data_dir)
    splits = builder.info.splits
    val_split = next((s for s in ("validation", "test") if s in splits), None)
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ConfigError(
            f"TFDS dataset {name!r} has features {list(features)}; the built-in job needs "
            "'image' and 'label'. Pass your own dataset function through the Python API.")
    names = {"train": "train", "validation": val_split}

    def read(split, context):
        split_name = names[split]
        files = splits[split_name].num_shards
        by_files = context is not None and files >= context.num_input_pipelines
        config = tfds.ReadConfig(input_context=context if by_files else None)
        dataset = builder.as_dataset(split=split_name, read_config=config)
        dataset = dataset if by_files else _shard(dataset, context)
        return dataset.map(lambda example: (tf.cast(example["image"], tf.float32) / 255.0,
                                            tf.cast(example["label"], tf.int32)),
                           num_parallel_calls=tf.data.AUTOTUNE)

    return DataSource(name, tuple(features["image"].shape), features["label"].num_classes,
                      splits["train"].num_examples,
                      splits[val_split].num_examples if val_split else 0, read)


def load_source(name: str, *, data_dir: Optional[str] = None, num_examples: int = 60000,
                seed: int = 0) -> DataSource:
    """Finds the dataset ``name``: ``digits``, ``synthetic``, ``interactions`` or a TFDS name."""
    if name == "digits":
        return _digits_source()
    if name == "synthetic":
        return _generated_source("synthetic", synthetic_batch, num_examples, seed,
                                 input_shape=(SYNTHETIC_FEATURES,),
                                 num_classes=SYNTHETIC_CLASSES)
    if name == "interactions":
        return _generated_source("interactions", interactions_batch, num_examples, seed,
                                 input_shape=(), num_classes=2,
                                 vocab_sizes={"user": INTERACTION_USERS,
                                              "item": INTERACTION_ITEMS})
    return _tfds_source(name, data_dir)


def make_dataset_fn(source: DataSource, split: str, *, global_batch_size: int,
                    training: bool, seed: int = 0, shuffle: bool = True) -> DatasetFn:
    """The dataset function for ``split``: sharded per input pipeline, batched per replica.

    Training data is shuffled (a different order each epoch, deterministic by seed;
    ``shuffle=False`` keeps the source order), repeated without end and batched with ``drop_remainder`` so every replica steps in
    lockstep; validation data is read once, keeping the last partial batch.
    """

    def dataset_fn(context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
        dataset = source.read(split, context)
        batch = global_batch_size
        if context is not None:
            batch = per_replica_batch_size(global_batch_size, context.num_replicas_in_sync)
        if training and shuffle:
            pipeline = context.input_pipeline_id if context is not None else 0
            buffer = min(source.num_train, _SHUFFLE_BUFFER)
            dataset = dataset.shuffle(buffer, seed=seed * 1000 + pipeline,
                                      reshuffle_each_iteration=True)
        if training:
            dataset = dataset.repeat()
        dataset = dataset.batch(batch, drop_remainder=training)
        return dataset.prefetch(tf.data.AUTOTUNE)

    return dataset_fn


def steps_per_epoch(source: DataSource, global_batch_size: int) -> int:
    """One pass over the training split, in whole global batches."""
    steps = source.num_train // global_batch_size
    if steps < 1:
        raise ConfigError(
            f"global_batch_size ({global_batch_size}) is larger than the {source.name!r} "
            f"training split ({source.num_train} examples); use at most {source.num_train}.")
    return steps
