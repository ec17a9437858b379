"""What `tfdist.fit`, `evaluate` and `predict` read: Keras' inputs as the Trainer takes them.

Owns turning the inputs of Keras' `fit` (`x`, `y`, weights, `batch_size`, `shuffle`,
`validation_split`, `validation_data`, `validation_batch_size`, `validation_steps`,
`steps_per_epoch`) into a training dataset function, its `EpochPlan` and the
`Validation` the Trainer takes. Under the synchronous strategies every input becomes
Keras' own global batches (`tfdist.data.global_batches`) shared among the replicas
(`tfdist.data.replica_batches`), so each step trains on the batch Keras' fit would.
Under `parameter_server`, whose workers step apart, and under a `shard_policy` other than
`auto`/`data` (`hash`, `random`, `off`, `file`), the training arrays or dataset are
the data layer's source (`tfdist.data.keras_inputs`), each worker reading its part in full
batches, `ceil(N / batch)` steps an epoch over all workers; its validation, evaluation and
prediction run on the coordinator, in Keras' batches.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import tensorflow as tf

from tfdist.config import ConfigError, check_count
from tfdist.data.epochs import EpochPlan
from tfdist.data.global_batches import GlobalBatches
from tfdist.data.keras_inputs import (
    arrays_source,
    check_batch_size,
    dataset_source,
    global_batches_of,
    is_dataset,
    is_keras_input,
    split_for_validation,
    validation_batches_of,
)
from tfdist.data.pipeline import DatasetFn, make_dataset_fn
from tfdist.data.replica_batches import per_replica
from tfdist.distribute.strategies import Distribution
from tfdist.training.controller import Validation


def shared_fn(batches: GlobalBatches, *, repeat: bool, steps: int | None = None) -> DatasetFn:
    """A dataset function of `batches` shared among the replicas of its input context.

    `repeat`: the passes back to back (training); else one pass, its first `steps`.
    """

    def dataset_fn(context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        context = context or tf.distribute.InputContext()
        local = context.num_replicas_in_sync // context.num_input_pipelines
        where = dict(
            num_replicas=context.num_replicas_in_sync,
            first_replica=context.input_pipeline_id * local,
            local_replicas=local,
        )
        if batches.shares is not None:
            shares = batches.shares(repeat=repeat, **where)
        else:
            stream = batches.stream() if repeat else batches.one_pass()
            shares = per_replica(stream, **where)
        if steps is not None:
            shares = shares.take(steps * local)
        return shares.prefetch(tf.data.AUTOTUNE) if batches.prefetch else shares

    dataset_fn.metered = True  # type: ignore[attr-defined]
    return dataset_fn


@dataclasses.dataclass
class FitInputs:
    """What the Trainer takes for one fit.

    Attributes:
      train_fn: the training dataset function.
      plan: the steps of each epoch.
      global_batch_size: examples of a full global batch.
      validation: what each validated epoch reads, or None.
      source: the global batches of the training data (synchronous strategies).
    """

    train_fn: DatasetFn
    plan: EpochPlan
    global_batch_size: int
    validation: Validation | None
    source: GlobalBatches | None = None


def _validation(
    validation_data: Any,
    *,
    batch_size: int | None,
    steps: int | None,
    seed: int,
) -> Validation:
    batches = validation_batches_of(validation_data, batch_size=batch_size, seed=seed)
    known = batches.num_batches
    if steps is not None:
        check_count("validation_steps", steps)
        known = steps if known is None else min(known, steps)
    return Validation(fn=shared_fn(batches, repeat=False, steps=steps), steps=known, equal=True)


# Shard policies Keras' own batches are read under: every worker reads each global batch
# and keeps its replicas' shares, so each example once per epoch, as `data` gives.
DEALT_POLICIES = ("auto", "data")


def fit_inputs(
    distribution: Distribution,
    x: Any,
    y: Any,
    *,
    batch_size: int | None,
    sample_weight: Any,
    class_weight: dict | None,
    shuffle: bool | str,
    validation_split: float,
    validation_data: Any,
    validation_batch_size: int | None,
    validation_steps: int | None,
    steps_per_epoch: int | None,
    seed: int,
    shard_policy: str,
    grad_accum_steps: int,
) -> FitInputs:
    """Keras' fit inputs as the Trainer's (see the module docstring)."""
    if steps_per_epoch is not None:
        check_count("steps_per_epoch", steps_per_epoch)
    if validation_split and validation_data is None:
        (x, y, sample_weight), validation_data = split_for_validation(
            x, y, sample_weight, validation_split
        )
    elif validation_split:
        split_for_validation(x, y, sample_weight, 0.0)  # The same checks of x.
    validation = None
    if validation_data is not None:
        validation = _validation(
            validation_data,
            batch_size=validation_batch_size or batch_size,
            steps=validation_steps,
            seed=seed,
        )
    dealt = shard_policy in DEALT_POLICIES
    if not distribution.is_async and not dealt and is_keras_input(x):
        raise ConfigError(
            f"shard_policy ({shard_policy!r}) splits the data layer's sources between the "
            f"workers, but fit x is a {type(x).__name__}, which every worker reads whole; "
            "use shard_policy='auto' (each batch dealt among the replicas)."
        )
    if distribution.is_async or not dealt:
        return _data_layer(
            x,
            y,
            batch_size=batch_size,
            sample_weight=sample_weight,
            class_weight=class_weight,
            shuffle=shuffle,
            validation=validation,
            steps_per_epoch=steps_per_epoch,
            seed=seed,
            shard_policy=shard_policy,
            grad_accum_steps=grad_accum_steps,
        )
    batches = global_batches_of(
        x,
        y,
        sample_weight=sample_weight,
        class_weight=class_weight,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        name="fit x",
    )
    plan = batches.plan(steps_per_epoch)
    if grad_accum_steps > 1 and plan.num_batches is not None:
        # An optimizer step reads grad_accum_steps batches: a pass has that many fewer.
        plan = dataclasses.replace(plan, num_batches=max(1, plan.num_batches // grad_accum_steps))
    return FitInputs(
        train_fn=shared_fn(batches, repeat=plan.known),
        plan=plan,
        global_batch_size=batches.batch_size or 0,
        validation=validation,
        source=batches,
    )


def _data_layer(
    x: Any,
    y: Any,
    *,
    batch_size: int | None,
    sample_weight: Any,
    class_weight: dict | None,
    shuffle: bool | str,
    validation: Validation | None,
    steps_per_epoch: int | None,
    seed: int,
    shard_policy: str,
    grad_accum_steps: int,
) -> FitInputs:
    """Each worker reads its part of the data layer's source (`make_dataset_fn`, the
    shard policies of `tfdist.data.sharding`): under parameter_server, and under the sync
    strategies for a `shard_policy` other than `auto`/`data` (full batches only)."""
    if is_dataset(x):
        if y is not None or sample_weight is not None or class_weight is not None:
            raise ConfigError(
                "fit x is a tf.data.Dataset: give its targets and weights inside its "
                "batches, not as y=, sample_weight= or class_weight=."
            )
        source, batch = dataset_source(x)
    elif is_keras_input(x):
        raise ConfigError(
            f"fit x is a {type(x).__name__}; under strategy='parameter_server' give NumPy "
            "arrays or a tf.data.Dataset."
        )
    else:
        source = arrays_source(
            x, y, sample_weight=sample_weight, class_weight=class_weight, name="fit x"
        )
        batch = check_batch_size(batch_size)
    steps = steps_per_epoch or max(1, math.ceil(source.num_train / batch))
    train_fn = make_dataset_fn(
        source,
        "train",
        global_batch_size=batch,
        training=True,
        seed=seed,
        shuffle=bool(shuffle) and not is_dataset(x),
        shard_policy=shard_policy,
        steps_per_epoch=steps * grad_accum_steps,
    )
    return FitInputs(
        train_fn=train_fn,
        plan=EpochPlan(None, steps, endless=True),
        global_batch_size=batch,
        validation=validation,
    )


def inference_inputs(
    x: Any,
    y: Any = None,
    *,
    sample_weight: Any = None,
    batch_size: int | None,
    steps: int | None,
    name: str,
) -> tuple[DatasetFn, int | None, GlobalBatches]:
    """`evaluate`'s or `predict`'s dataset function (one pass, Keras' batches shared
    among the replicas), its number of batches when known, and the batches."""
    batches = global_batches_of(
        x,
        y,
        sample_weight=sample_weight,
        batch_size=batch_size,
        shuffle=False,
        seed=0,
        name=f"{name} x",
    )
    known = batches.num_batches
    if steps is not None:
        check_count("steps", steps)
        known = steps if known is None else min(known, steps)
    return shared_fn(batches, repeat=False, steps=steps), known, batches
