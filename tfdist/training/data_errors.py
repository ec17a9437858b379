"""The user's data mistakes as one line, under every strategy and on every worker.

Owns `data_errors`, the one entry point the front doors (`tfdist.fit`, `evaluate`,
`predict` and the command line's job) wrap around training, evaluation or prediction:

- before anything runs, the data is checked against the model
  (`tfdist.training.data_checks`), so every worker raises the same `ConfigError` before
  any collective;
- what only a step can see is translated where it surfaces: a sparse label outside the
  classes in a dataset (a TensorFlow error of the compiled call, on a `multi_worker`
  worker, or on the `parameter_server` coordinator through `ClusterCoordinator`); a
  `multi_worker` task that stops so aborts its collectives with the reason
  (`abort_collectives`), and its peers, whose all-reduce fails with that reason, stop with
  a line that names the task that failed and where to look;
- a run that diverged (`TrainingDiverged`) on data holding NaN/inf says where the data
  holds it; on a dataset with a bad label in a later batch (a GPU's sparse cross-entropy
  gives NaN where a CPU's raises), which label it is.

Errors it does not recognise pass through unchanged: a lost worker stays an
`UnavailableError` for the fault tolerance that handles it. The wording of TensorFlow's
errors is `tfdist.tf_errors`'.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import keras
import tensorflow as tf

from tfdist.config import ConfigError
from tfdist.data.pipeline import DataSource
from tfdist.distribute.communication import abort_collectives, published_stop_reason
from tfdist.distribute.strategies import Distribution
from tfdist.tf_errors import (
    aborted_by_peer,
    label_out_of_range,
    peer_abort_reason,
    peer_stop_reason,
)
from tfdist.training.data_checks import (
    Data,
    arrays_data,
    check_data,
    check_every_batch,
    dataset_data,
    non_finite,
    out_of_range_message,
)
from tfdist.training.history import TrainingDiverged
from tfdist.training.model_io import ModelIO, model_io

_SAMPLE_BATCH = 32  # Examples of a DataSource read for the checks.


def _data(x: Any, y: Any, *, name: str) -> Data | None:
    """What of `x` (and `y`) the checks can read without consuming it: arrays, a
    dataset's spec and first batch, a PyDataset's first batch; None for a generator."""
    if isinstance(x, tf.data.Dataset):
        return dataset_data(x, name=f"dataset {name}")
    if isinstance(x, keras.utils.PyDataset):
        if not len(x):
            return None
        bx, by, _ = keras.utils.unpack_x_y_sample_weight(_as_tuple(x[0]))
        return arrays_data(bx, by, features=f"{name}[0]'s x", labels=f"{name}[0]'s y")
    if _is_iterator(x):
        return None
    return arrays_data(x, y)


def _as_tuple(batch: Any) -> Any:
    return tuple(batch) if isinstance(batch, list) else batch


def _is_iterator(x: Any) -> bool:
    return hasattr(x, "__next__") or (hasattr(x, "__iter__") and not hasattr(x, "__len__"))


def _all_data(x: Any, y: Any, validation_data: Any, name: str) -> list[Data]:
    if isinstance(x, DataSource):  # The command line's: each split read as a dataset.
        return [
            dataset_data(
                x.read(split).batch(_SAMPLE_BATCH),
                name=name if split == "train" else f"the {split} split of {name}",
                own=True,
            )
            for split in ("train", "validation")
            if split in x.splits
        ]
    found = [_data(x, y, name=name)]
    if isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
        vx, vy = validation_data[:2]
        found.append(arrays_data(vx, vy, features="validation_data x", labels="validation_data y"))
    elif validation_data is not None:
        found.append(_data(validation_data, None, name="validation_data"))
    return [part for part in found if part is not None]


def _task(distribution: Distribution) -> str:
    return f"{distribution.role.type}:{distribution.role.index}"


def _translated(
    error: tf.errors.OpError, io: ModelIO, data: list[Data], distribution: Distribution
) -> ConfigError | None:
    """The one line for an error of a compiled call, or None for one that is not the data's."""
    peer = aborted_by_peer(error)
    if peer is None and _lost_peer(error, distribution):
        reason = published_stop_reason()
        peer = peer_stop_reason(reason) if reason else None
    if peer is not None:
        task, message = peer
        return ConfigError(
            f"{_task(distribution)} stopped because {task} stopped on a data error (see "
            f"{task}'s output): {message}"
        )
    found = label_out_of_range(error)
    if found is None:
        return None
    label, classes = found
    read = next((d for d in data if d.dataset is not None), data[0])
    message = out_of_range_message(read.named[1], label, classes, io.output_with_classes(classes))
    if distribution.num_workers > 1 and not distribution.is_async:
        abort_collectives(peer_abort_reason(_task(distribution), message))
    return ConfigError(message)


def _lost_peer(error: tf.errors.OpError, distribution: Distribution) -> bool:
    """A `multi_worker` collective that failed because a peer stopped (its heartbeat lost,
    or its collectives aborted before this task's all-reduce reached it)."""
    return (
        distribution.num_workers > 1
        and not distribution.is_async
        and isinstance(error, (tf.errors.UnavailableError, tf.errors.AbortedError))
    )


def _diverged_on_data(error: TrainingDiverged, io: ModelIO, data: list[Data]) -> ConfigError | None:
    """Where the data holds NaN/inf or a bad label a first batch did not show, or None."""
    found = next((where for d in data if (where := non_finite(d))), None)
    if found is None:
        try:
            for part in data:
                check_every_batch(io, part)
        except ConfigError as mistake:
            return mistake
        return None
    what = "the training loss" if error.what == "training loss" else error.what
    return ConfigError(
        f"{found}, and {what} became NaN/inf by step {error.step} (epoch "
        f"{error.epoch}); replace or drop the non-finite values before training "
        "(e.g. np.nan_to_num), or give the model a layer that handles them."
    )


@contextlib.contextmanager
def data_errors(
    model: keras.Model,
    distribution: Distribution,
    x: Any,
    y: Any = None,
    *,
    validation_data: Any = None,
    name: str = "x",
    targets: bool = True,
) -> Iterator[None]:
    """Checks the data against `model`, then turns the data's errors inside into one line.

    Args:
      model: the compiled (or, for predict, built) model.
      distribution: the strategy it runs under.
      x: Keras' `x` (arrays, a dict or list of them, or a batched `tf.data.Dataset`), or
        the command line's `DataSource`.
      y: Keras' `y`, or None.
      validation_data: fit's `validation_data`.
      name: how messages call `x` (`dataset='my_data:load'` for the command line's).
      targets: check the targets too (not for predict, which ignores them).

    Raises:
      ConfigError: one line naming the data, the value and the fix.
    """
    io = model_io(model)
    data = _all_data(x, y, validation_data, name)
    for part in data:
        check_data(io, part if targets else dataclasses.replace(part, targets={}))
    try:
        yield
    except tf.errors.OpError as error:
        translated = _translated(error, io, data, distribution)
        if translated is None:
            raise
        raise translated from None
    except TrainingDiverged as error:
        translated = _diverged_on_data(error, io, data)
        if translated is None:
            raise
        raise translated from None
