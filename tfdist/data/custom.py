"""The user's own data by import path: `--dataset=package.module:function`.

This module owns the contract of a *source function*, the CLI's way to train on
your own data: a function of no arguments that returns

- arrays `(x_train, y_train)` or `(x_train, y_train, x_val, y_val)` (`x` an
  array with one row per example, or a dict of such arrays; `y` integer class
  labels), wrapped with `numpy_source`; or
- a `DataSource`, e.g. `tfdist.data.pipeline.numpy_source(...)` or
  `csv_source(...)`, for ids, class counts or files.

It is not a `dataset_fn(InputContext)`: the job makes the dataset function from
the source (`tfdist.data.pipeline.make_dataset_fn`), so sharding between the
workers (`shard_policy`), shuffling and epochs apply as to the built-in
datasets and each training example is seen once per epoch. Resolving the path
is `tfdist.import_paths`'s; the sources are `tfdist.data.sources`'.
"""

from __future__ import annotations

import inspect

import numpy as np
import tensorflow as tf

from tfdist.config import ConfigError
from tfdist.data.sources import DataSource, numpy_source
from tfdist.import_paths import resolve

_CONTRACT = (
    "a function of no arguments returning (x_train, y_train), "
    "(x_train, y_train, x_val, y_val) or a DataSource such as "
    "tfdist.data.pipeline.numpy_source(x, y)"
)


def _check_no_arguments(path: str, function) -> None:
    try:
        inspect.signature(function).bind()
    except TypeError:
        hint = ""
        if any(
            name in ("context", "input_context", "ctx")
            for name in inspect.signature(function).parameters
        ):
            hint = (
                " (a dataset_fn(InputContext) is the Trainer's contract: here return the "
                "arrays and tfdist shards them between the workers)"
            )
        raise ConfigError(
            f"dataset ({path!r}) takes arguments {inspect.signature(function)}{hint}; "
            f"expected {_CONTRACT}."
        ) from None
    except ValueError:  # No signature to inspect (a builtin): let the call tell.
        pass


def _check_numeric_labels(path: str, labels) -> None:
    """Class names as labels: no loss takes them, and the classes cannot be counted."""
    for leaf in tf.nest.flatten(list(labels)):
        array = np.asarray(leaf)
        if array.dtype.kind in "USO" and array.size and isinstance(array.flat[0], (str, bytes)):
            names = np.unique(array)
            raise ConfigError(
                f"dataset ({path!r}) returned labels that are strings (e.g. "
                f"{str(array.flat[0])!r}); the loss needs numbers: map the {len(names)} class "
                f"names to 0..{len(names) - 1} first, e.g. names, y = np.unique(y, "
                "return_inverse=True)."
            )


def custom_source(path: str) -> DataSource:
    """Calls the source function at `path` (`package.module:function`); returns its source.

    Raises:
      ConfigError: the path does not resolve, the function takes arguments, or it
        returns something other than the arrays or a `DataSource` (named in the
        message with the expected form).
    """
    function = resolve(path, what="dataset", example="my_data:load_arrays")
    if not callable(function):
        raise ConfigError(
            f"dataset ({path!r}) names a {type(function).__name__}; expected {_CONTRACT}."
        )
    _check_no_arguments(path, function)
    value = function()
    if isinstance(value, DataSource):
        return value
    if isinstance(value, tf.data.Dataset):
        raise ConfigError(
            f"dataset ({path!r}) returned a tf.data.Dataset, which tfdist cannot shard so each "
            f"example is seen once per epoch; expected {_CONTRACT}."
        )
    if isinstance(value, (tuple, list)) and len(value) in (2, 4):
        _check_numeric_labels(path, value[1::2])
        validation = tuple(value[2:]) or None
        return numpy_source(value[0], value[1], validation=validation, name=path)
    got = (
        f"a {type(value).__name__} of {len(value)}"
        if isinstance(value, (tuple, list))
        else type(value).__name__
    )
    raise ConfigError(f"dataset ({path!r}) returned {got}; expected {_CONTRACT}.")
