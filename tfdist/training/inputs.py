"""The inputs of a run: the training iterator and the validation dataset, per strategy.

Owns how a dataset function becomes what the loops read: a distributed dataset from
`distribute_datasets_from_function` (sync strategies), the dataset itself where a
process feeds one CPU replica (`Distribution.direct_input_context`), one dataset per
parameter-server worker (`create_per_worker_dataset`) and the whole validation split
read by the coordinator; and where a resumed run starts reading: after the batches its
earlier steps consumed. Dataset functions are `tfdist.data.pipeline`'s.
"""

from __future__ import annotations

import tensorflow as tf

from tfdist.data.pipeline import per_worker_dataset_fn


def whole_split_context() -> tf.distribute.InputContext:
    """The input context of one process reading a whole split (the PSS coordinator)."""
    return tf.distribute.InputContext(
        num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=1
    )


def skipping(train_fn, micro_steps: int):
    """`train_fn` with the batches of `micro_steps` steps already consumed skipped."""
    if not micro_steps:
        return train_fn

    def resumed(context):
        per_pipeline = context.num_replicas_in_sync // context.num_input_pipelines
        return train_fn(context).skip(micro_steps * per_pipeline)

    return resumed


def make_inputs(distribution, train_fn, validation_fn, *, skip_micro_steps: int = 0):
    """`(training iterator or None, validation dataset or None)` for `distribution`.

    Training resumes after `skip_micro_steps` consumed micro-batches (sync strategies).
    Under `parameter_server` every worker builds its own training dataset and the
    coordinator reads the whole validation split; a process that feeds one CPU replica
    reads its datasets directly (a distributed iterator only adds a copy per batch there).
    """
    strategy = distribution.strategy
    if distribution.is_async:
        train = iter(
            distribution.coordinator.create_per_worker_dataset(
                per_worker_dataset_fn(train_fn, num_workers=distribution.num_workers)
            )
        )
        return train, validation_fn(whole_split_context()) if validation_fn else None
    if train_fn is not None:
        train_fn = skipping(train_fn, skip_micro_steps)
    direct = distribution.direct_input_context()
    if direct is not None:
        return (
            iter(train_fn(direct)) if train_fn else None,
            validation_fn(direct) if validation_fn else None,
        )
    train = iter(strategy.distribute_datasets_from_function(train_fn)) if train_fn else None
    validation = (
        strategy.distribute_datasets_from_function(validation_fn) if validation_fn else None
    )
    return train, validation
