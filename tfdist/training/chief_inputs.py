"""`tfdist.fit` under `parameter_server` on data the script built, served from the chief.

Owns the front door's use of `tfdist.data.chief_service` for a `tf.data.Dataset`, a
`keras.utils.PyDataset` or a generator given as `x` to `tfdist.fit` under
`parameter_server`: Keras' rules for such inputs (no `y`, `batch_size`, `sample_weight`,
`class_weight` or `validation_split`), steps per epoch (a pass of a finite dataset, else
`steps_per_epoch`), the validation data the coordinator reads itself, and the service's
lifetime: started before the fit, stopped when it ends. Each batch is trained on as the
script made it (the last partial batch kept) by exactly one worker per pass. The data
does not resume exactly: a rerun with `model_dir` restores the model, optimizer and step
and reads the data from its start.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import keras
import tensorflow as tf

from tfdist.config import ConfigError, check_count
from tfdist.data.chief_service import (
    DATASET,
    ChiefService,
    ScriptBatches,
    is_script_batches,
    script_batches,
)
from tfdist.data.keras_inputs import validation_split_reader
from tfdist.data.peek import first_element
from tfdist.data.pipeline import DatasetFn
from tfdist.distribute.strategies import Distribution
from tfdist.training.callbacks import check_verbose
from tfdist.training.history import History
from tfdist.training.trainer import Trainer


def chief_host(distribution: Distribution) -> str:
    """The chief's host as the cluster names it (the workers reach the service there)."""
    strategy = distribution.strategy
    # ParameterServerStrategy keeps its resolver on itself; its public `cluster_resolver`
    # looks on `extended` and says None.
    resolver = strategy.cluster_resolver or getattr(strategy, "_cluster_resolver", None)
    if resolver is None:
        return "localhost"
    address: str = resolver.cluster_spec().task_address("chief", 0)
    return address.rpartition(":")[0] or "localhost"


def _check_keras_rules(
    what: str,
    *,
    y: Any,
    batch_size: int | None,
    sample_weight: Any,
    class_weight: Any,
    validation_split: float,
) -> None:
    given = [
        name
        for name, value in (
            ("y", y),
            ("batch_size", batch_size),
            ("sample_weight", sample_weight),
            ("class_weight", class_weight),
        )
        if value is not None
    ] + (["validation_split"] if validation_split else [])
    if given:
        raise ConfigError(
            f"x is {what}: it holds its own targets, weights and batches, so "
            f"{', '.join(given)} cannot be given too; put them in its elements ((x, y) or "
            "(x, y, sample_weight)) and pass validation_data= for validation."
        )


def _steps(batches: ScriptBatches, steps_per_epoch: int | None, grad_accum_steps: int) -> int:
    """Steps per epoch: `steps_per_epoch`, else one pass of the batches."""
    if steps_per_epoch is not None:
        return check_count("steps_per_epoch", steps_per_epoch)
    count = batches.num_batches
    if count is None and not batches.infinite and batches.kind == DATASET:
        # A dataset of unknown length (a filter) restarts: count one pass here, as Keras does.
        count = int(batches.dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
    if count is None:
        raise ConfigError(
            f"x is {batches.kind} with no length (it is infinite "
            "or cannot be counted without consuming it); pass steps_per_epoch=, the batches "
            "of one epoch."
        )
    if count == 0:
        raise ConfigError(f"{batches.what} is empty; give it at least one batch.")
    steps = count // grad_accum_steps
    if steps < 1:
        raise ConfigError(
            f"{batches.what} has {count} batch(es), fewer than grad_accum_steps "
            f"({grad_accum_steps}) for one step; give it more batches or use fewer steps."
        )
    return steps


def _batch_size(batches: ScriptBatches) -> int:
    """The global batch for examples/s: the script's batch, else the first one's size
    (0, no examples/s, where a `.cache()` forbids reading it: `tfdist.data.peek`)."""
    if batches.batch_size is not None:
        return batches.batch_size
    read, first = first_element(batches.dataset)
    if not read:
        return 0
    sizes = [int(leaf.shape[0]) for leaf in tf.nest.flatten(first) if getattr(leaf, "shape", ())]
    if not sizes:
        raise ConfigError(f"{batches.what} is empty; give it at least one batch.")
    return sizes[0]


def _validation_fn(
    validation_data: Any, validation_steps: int | None, batch: int
) -> DatasetFn | None:
    """What the coordinator evaluates on: the script's batches, or arrays batched by `batch`."""
    if validation_data is None:
        return None
    if is_script_batches(validation_data):
        dataset = script_batches(validation_data, what="validation_data").dataset
    else:
        dataset = validation_split_reader(validation_data, batch).records().batch(batch)
    if validation_steps is not None:
        dataset = dataset.take(check_count("validation_steps", validation_steps))

    def validation(context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        del context  # Under parameter_server the coordinator reads all of it itself.
        return dataset

    return validation


def fit_from_chief(
    trainer: Trainer,
    x: Any,
    *,
    y: Any = None,
    batch_size: int | None = None,
    sample_weight: Any = None,
    class_weight: dict[int, float] | None = None,
    validation_split: float = 0.0,
    epochs: int = 1,
    steps_per_epoch: int | None = None,
    validation_data: Any = None,
    validation_steps: int | None = None,
    validation_freq: int | Collection[int] = 1,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
    initial_epoch: int = 0,
) -> History:
    """Trains `trainer`'s model on `x`, served to the parameter-server workers from here.

    Arguments are `tfdist.fit`'s. Returns its `History`.
    """
    batches = script_batches(x)
    _check_keras_rules(
        batches.kind,
        y=y,
        batch_size=batch_size,
        sample_weight=sample_weight,
        class_weight=class_weight,
        validation_split=validation_split,
    )
    steps = _steps(batches, steps_per_epoch, trainer.loop.grad_accum_steps)
    batch = _batch_size(batches)
    validation_fn = _validation_fn(validation_data, validation_steps, batch)
    with ChiefService(batches, host=chief_host(trainer.distribution)) as served:
        try:
            return trainer.fit(
                served.dataset_fn,
                epochs=epochs,
                steps_per_epoch=steps,
                global_batch_size=batch,
                validation_fn=validation_fn,
                callbacks=callbacks,
                verbose=check_verbose(verbose),
                validation_freq=validation_freq,
                initial_epoch=initial_epoch,
            )
        except tf.errors.OutOfRangeError:
            raise ConfigError(
                f"{batches.what} ran out of batches before epochs ({epochs}) x steps_per_epoch "
                f"({steps}) steps; make it yield that many (or forever) or ask for fewer."
            ) from None
