"""Data layer: named sources and the one dataset-function contract every strategy shares.

A dataset function takes a `tf.distribute.InputContext` and returns a
`tf.data.Dataset` of per-replica batches of `(features, labels)`; the trainer
hands it to `distribute_datasets_from_function` (sync strategies) or, through
`per_worker_dataset_fn`, to `ClusterCoordinator.create_per_worker_dataset`
(parameter server). This module owns that contract: finding a source by name
(`load_source`), the per-replica batch computed from the one
`global_batch_size`, shuffling, and what an epoch is. Sources live in
`tfdist.data.sources` (in memory, generated), `tfdist.data.files` (CSV, images) and
`tfdist.data.tfrecords` (TFRecord, TFDS), sharding policies in `tfdist.data.sharding`, the
tf.data service in `tfdist.data_service`.

An epoch of training is `steps_per_epoch` global batches (by default
`num_train // global_batch_size`). Each input pipeline reads its part of the
split (`shard_policy`) once per epoch, reshuffled, and stops after its
`steps_per_epoch * global_batch_size / num_pipelines` examples, so epochs line
up with passes: when the parts are equal and whole batches (`data` and
`random` when `global_batch_size` divides `num_train`; `file` with equal
files), every training example is seen exactly once per epoch; otherwise each
example at most once, and the few left over are other ones each epoch. Validation
reads each pipeline's part once. A part that fits in memory is shuffled and batched
as one table (`tfdist.data.in_memory`); a larger one is streamed (`streamed_epochs`).
Under the `data` policy with shuffling, when the whole split fits in memory, the sync
strategies' pipelines instead deal each epoch's permutation of the whole split among
themselves (as PyTorch's `DistributedSampler`): a global step reads the same examples
whatever the number of workers, so a run resumed with fewer workers stays exactly once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import tensorflow as tf

from tfdist.config import (
    FILE_DATASETS,
    SHARD_POLICIES,
    ConfigError,
    check_choice,
    per_replica_batch_size,
)
from tfdist.data.custom import custom_source
from tfdist.data.files import csv_source, expand_files, image_folder_source
from tfdist.data.in_memory import epochs_in_memory
from tfdist.data.service import ServiceTarget, distribute
from tfdist.data.sharding import decode, fits_in_memory, part_size, resolve_policy, sharded_examples
from tfdist.data.sources import (
    DIGITS_VALIDATION,
    INTERACTION_FACTORS,
    INTERACTION_ITEMS,
    INTERACTION_USERS,
    SYNTHETIC_CLASSES,
    SYNTHETIC_FEATURES,
    DataSource,
    SplitReader,
    digits_source,
    interactions_batch,
    interactions_source,
    load_digits_arrays,
    npz_source,
    numpy_source,
    synthetic_batch,
    synthetic_source,
)
from tfdist.data.tfrecords import tfds_source, tfrecord_source
from tfdist.import_paths import is_import_path
from tfdist.tf_errors import is_infinite_input_exhausted, is_iterator_error, tf_reason

__all__ = [  # Sources and constants other modules import from here, and this module's API.
    "BUILTIN_DATASETS",
    "DIGITS_VALIDATION",
    "INTERACTION_FACTORS",
    "INTERACTION_ITEMS",
    "INTERACTION_USERS",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_FEATURES",
    "DataSource",
    "DatasetFn",
    "SplitReader",
    "csv_source",
    "image_folder_source",
    "input_errors",
    "interactions_batch",
    "load_digits_arrays",
    "load_source",
    "make_dataset_fn",
    "npz_source",
    "numpy_source",
    "per_worker_dataset_fn",
    "steps_per_epoch",
    "synthetic_batch",
    "tfrecord_source",
]

DatasetFn = Callable[[tf.distribute.InputContext | None], tf.data.Dataset]
BUILTIN_DATASETS = ("digits", "synthetic", "interactions") + FILE_DATASETS
_SHUFFLE_BUFFER = 100_000
_SERVED_BATCH = 256


def load_source(
    name: str,
    *,
    data_dir: str | None = None,
    num_examples: int = 60000,
    seed: int = 0,
    train_files=None,
    validation_files=None,
    label_key: str = "label",
    id_key: str | None = None,
    feature_spec=None,
    num_classes: int | None = None,
    image_size=None,
    image_shape=None,
) -> DataSource:
    """Finds the dataset `name`.

    `digits`, `synthetic` (`num_examples`, `seed`; `image_shape` (H, W, C) makes
    its examples images) and `interactions` are built in; `tfrecord`, `csv`, `npz` and
    `image_folder` read
    `train_files`/`validation_files` (see `tfdist.data.files`); any other name
    is a TFDS dataset prepared under `data_dir`. `package.module:function` is the
    user's own source function (`tfdist.data.custom`).
    """
    if is_import_path(name):
        return custom_source(name)
    if name == "digits":
        return digits_source()
    if name == "synthetic":
        return synthetic_source(num_examples, seed, image_shape)
    if name == "interactions":
        return interactions_source(num_examples, seed)
    if name in FILE_DATASETS and not train_files:
        raise ConfigError(f"dataset {name!r} reads files: pass train_files=GLOB.")
    if name == "tfrecord":
        return tfrecord_source(
            train_files=train_files,
            validation_files=validation_files,
            feature_spec=feature_spec,
            label_key=label_key,
            id_key=id_key,
            num_classes=num_classes,
        )
    if name == "csv":
        return csv_source(
            train_files=train_files,
            validation_files=validation_files,
            label_key=label_key,
            id_key=id_key,
            num_classes=num_classes,
        )
    if name == "npz":
        validation = expand_files(validation_files, "validation_files") if validation_files else ()
        return npz_source(
            train_files=expand_files(train_files, "train_files"),
            validation_files=validation,
            label_key=label_key,
            id_key=id_key,
            num_classes=num_classes,
        )
    if name == "image_folder":
        return image_folder_source(
            train_files=train_files, validation_files=validation_files, image_size=image_size
        )
    return tfds_source(name, data_dir, BUILTIN_DATASETS)


def steps_per_epoch(source: DataSource, global_batch_size: int) -> int:
    """One pass over the training split, in whole global batches."""
    return _one_pass(source, global_batch_size)


def _one_pass(source: DataSource, global_batch_size: int) -> int:
    steps = source.num_train // global_batch_size
    if steps < 1:
        raise ConfigError(
            f"global_batch_size ({global_batch_size}) is larger than the {source.name!r} "
            f"training split ({source.num_train} examples); use at most {source.num_train}."
        )
    return steps


def _options() -> tf.data.Options:
    options = tf.data.Options()
    # distribute_datasets_from_function never auto-shards; this keeps any other wrapper
    # (experimental_distribute_dataset, Keras) from sharding the parts a second time.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options


def make_dataset_fn(
    source: DataSource,
    split: str,
    *,
    global_batch_size: int,
    training: bool,
    seed: int = 0,
    shuffle: bool = True,
    shard_policy: str = "auto",
    steps_per_epoch: int | None = None,
    data_service: ServiceTarget | None = None,
) -> DatasetFn:
    """The dataset function for `split`: sharded per input pipeline, batched per replica.

    Args:
      source: from `load_source`.
      split: `train` or `validation`.
      global_batch_size: examples per step over all replicas (per worker step under
        parameter_server, whose context counts one replica per worker).
      training: shuffle (each epoch differently, deterministic by `seed`; not with
        `shuffle=False`), repeat without end in epochs of `steps_per_epoch` batches,
        and drop partial batches so every replica steps in lockstep. Otherwise each
        pipeline reads its part once, keeping the last partial batch.
      shard_policy: how input pipelines split the data (`tfdist.data.sharding`).
      steps_per_epoch: global batches per epoch; None: one pass (`num_train // batch`).
      data_service: read training batches from this tf.data service job instead
        (`distributed_epoch`: the service splits the data; `shard_policy` must be
        `auto` or `off`).
    """
    check_choice("shard_policy", shard_policy, SHARD_POLICIES)
    reader = source.split(split)
    if data_service is not None and shard_policy not in ("auto", "off"):
        raise ConfigError(
            f"shard_policy ({shard_policy!r}) does not apply with data_service: the service "
            "splits the data between the trainers itself; use auto or off."
        )
    if training and steps_per_epoch is None:
        steps_per_epoch = _one_pass(source, global_batch_size)

    def dataset_fn(context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        pipelines = context.num_input_pipelines if context is not None else 1
        pipeline = context.input_pipeline_id if context is not None else 0
        replicas = context.num_replicas_in_sync if context is not None else 1
        batch = per_replica_batch_size(global_batch_size, replicas)
        if data_service is not None:
            dataset = _served(
                reader, batch, training=training, shuffle=shuffle, target=data_service
            )
            return dataset.prefetch(tf.data.AUTOTUNE).with_options(_options())
        policy = resolve_policy(
            shard_policy, num_files=len(reader.files), num_pipelines=pipelines, what=reader.what
        )
        if not training:  # Each pipeline's part once, the last partial batch kept.
            dataset = sharded_examples(
                reader, policy=policy, num_pipelines=pipelines, pipeline_id=pipeline, seed=seed
            ).batch(batch)
            return dataset.prefetch(tf.data.AUTOTUNE).with_options(_options())
        # A pass stops after the pipeline's share of an epoch (off: each reads everything).
        quota = _quota(steps_per_epoch, global_batch_size, pipelines, batch)
        epoch = quota if policy != "off" and quota else None
        if _dealt(policy, shuffle, pipelines, pipeline, reader):
            whole = sharded_examples(
                reader, policy="off", num_pipelines=1, pipeline_id=0, cache=False
            )
            dataset = epochs_in_memory(
                whole,
                max_rows=reader.num_examples,
                batch=batch,
                epoch_examples=epoch,
                shuffle=True,
                seed=seed,
                pipeline=pipeline,
                deal=pipelines,
            )
            return dataset.prefetch(tf.data.AUTOTUNE).with_options(_options())
        in_memory = fits_in_memory(reader, policy, pipelines)
        examples = sharded_examples(
            reader,
            policy=policy,
            num_pipelines=pipelines,
            pipeline_id=pipeline,
            seed=seed,
            cache=False,
        )
        if in_memory:
            dataset = epochs_in_memory(
                examples,
                max_rows=part_size(reader.num_examples, policy, pipelines),
                batch=batch,
                epoch_examples=epoch,
                shuffle=shuffle,
                seed=seed,
                pipeline=pipeline,
            )
        else:
            dataset = streamed_epochs(
                examples,
                batch=batch,
                epoch_examples=epoch,
                shuffle=shuffle,
                seed=seed,
                pipeline=pipeline,
            )
        return dataset.prefetch(tf.data.AUTOTUNE).with_options(_options())

    return dataset_fn


def _dealt(policy: str, shuffle: bool, pipelines: int, pipeline, reader) -> bool:
    """Whether each epoch's permutation of the whole split is dealt among the pipelines.

    So under the `data` policy when shuffling, for the sync strategies (a Python pipeline
    index; parameter-server workers do not step in lockstep, so their parts stay fixed),
    when the whole split fits in memory (`tfdist.data.in_memory`).
    """
    return (
        policy == "data"
        and shuffle
        and pipelines > 1
        and isinstance(pipeline, int)
        and fits_in_memory(reader, "off", 1)
    )


def streamed_epochs(
    examples: tf.data.Dataset,
    *,
    batch: int,
    epoch_examples: int | None,
    shuffle: bool,
    seed: int,
    pipeline,
) -> tf.data.Dataset:
    """Batches of a part too large for memory, streamed: shuffled per example in a buffer,
    passes of at most `epoch_examples` (None: whole passes) one after another."""
    if shuffle:
        examples = examples.shuffle(
            _SHUFFLE_BUFFER, seed=_shuffle_seed(seed, pipeline), reshuffle_each_iteration=True
        )
    if epoch_examples:
        examples = examples.take(epoch_examples)
    batches = examples.repeat().batch(batch, drop_remainder=True)
    return batches.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))


def _quota(steps_per_epoch: int, global_batch_size: int, pipelines: int, batch: int) -> int:
    """One pipeline's examples per epoch: its share of the epoch's global batches."""
    return steps_per_epoch * global_batch_size // pipelines // batch * batch


def _shuffle_seed(seed: int, pipeline) -> int:
    """A seed per pipeline.

    A tensor pipeline id (a parameter-server worker's index) cannot seed `shuffle` once a
    global seed is set (TensorFlow compares seeds in Python), so those workers share one
    seed: their parts differ, so their batches do too (not under `off`).
    """
    return seed * 1000 + (pipeline if isinstance(pipeline, int) else 0)


def _served(
    reader: SplitReader, batch: int, *, training: bool, shuffle: bool, target: ServiceTarget
) -> tf.data.Dataset:
    """Batches of the whole split from the service; each pass splits it between trainers.

    The data workers run the pipeline: read, decode, shuffle (each pass anew) and, for
    training, repeat, so one service job covers the whole run. Its source gives the
    dispatcher coarse splits (files, or chunks of rows); nothing is cached, which
    would replay a worker's first splits instead of taking new ones. Elements travel
    as batches of `_SERVED_BATCH` examples and are re-batched per replica here.
    """
    examples = decode(reader.service_records(), reader)
    if training:
        if shuffle:
            examples = examples.shuffle(
                min(reader.num_examples, _SHUFFLE_BUFFER), reshuffle_each_iteration=True
            )
        examples = examples.repeat()
    served = distribute(examples.batch(max(batch, _SERVED_BATCH)), target)
    return served.rebatch(batch, drop_remainder=training)


def per_worker_dataset_fn(
    dataset_fn: DatasetFn, *, num_workers: int
) -> Callable[[], tf.data.Dataset]:
    """`dataset_fn` for `ClusterCoordinator.create_per_worker_dataset` (parameter server).

    The coordinator traces the returned function once and runs it on every worker;
    its context says `num_workers` input pipelines, the pipeline id being the worker's
    index (a tensor known when the dataset is created on the worker), and one replica
    per worker (`global_batch_size` is per worker step).
    """

    def on_worker() -> tf.data.Dataset:
        index = tf.distribute.coordinator.experimental_get_current_worker_index()
        return dataset_fn(
            tf.distribute.InputContext(
                num_input_pipelines=num_workers, input_pipeline_id=index, num_replicas_in_sync=1
            )
        )

    return on_worker


@contextlib.contextmanager
def input_errors(source: DataSource):
    """Turns a read error of `source`'s pipeline (a corrupt record, a bad CSV field, an
    undecodable image) into a one-line ConfigError naming the file.

    The trainer first reads the pipeline inside its compiled loop, so errors surface
    there; only errors of an iterator (`IteratorGetNext`) are translated.
    """
    try:
        yield
    except (tf.errors.OutOfRangeError, tf.errors.FailedPreconditionError) as error:
        # An empty part ends the stream; its asserted infinite cardinality then fails.
        if isinstance(error, tf.errors.FailedPreconditionError) and not is_infinite_input_exhausted(
            error
        ):
            raise
        raise ConfigError(
            f"an input pipeline of dataset {source.name!r} ran out of training examples "
            f"({tf_reason(error)}): with this shard_policy one worker's part is empty; use "
            "fewer workers, more data or shard_policy='data'."
        ) from None
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        if not is_iterator_error(error):
            raise
        found = source.diagnose()
        raise ConfigError(
            found
            or (f"reading dataset {source.name!r} failed ({tf_reason(error)}); check its files.")
        ) from None
