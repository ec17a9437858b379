"""The data checked against the model before anything runs: one line per mistake.

Owns the rules that Keras' own fit enforces deep inside a traced step (and reports there
as a long TensorFlow or Keras error), applied to the data up front and worded as one
line naming the data, the value and the fix: features of the wrong rank, width or dtype
for the model's inputs; targets the compiled loss cannot take (one-hot rows for a sparse
loss, class indices or the wrong number of classes for a categorical one, a width the
output cannot broadcast to, strings); sparse labels outside the output's classes. NumPy
data is read whole; a `tf.data.Dataset` by its `element_spec` and its first batch (not
through a `.cache()`: `tfdist.data.peek`). Every
worker holds the same data and the same model, so every worker raises the same
`ConfigError` before any collective. What the model expects is `tfdist.training.model_io`'s;
errors that only training can show are `tfdist.training.data_errors`'.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfdist.config import ConfigError
from tfdist.data.peek import first_element
from tfdist.training.model_io import Loss, LossKind, ModelIO, Tensor

Shape = tuple[int | None, ...]


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One array of the data: its name in messages, batch shape, whether it holds strings,
    and its values.

    `values` holds every row of an array, or the first batch of a dataset (`whole`
    False); None when there is nothing to read.
    """

    what: str
    shape: Shape
    is_string: bool
    values: np.ndarray | None
    whole: bool


@dataclasses.dataclass(frozen=True)
class Data:
    """Features and targets by the keys the model uses (`ModelIO`), and the names of both."""

    features: Mapping[Any, Leaf]
    targets: Mapping[Any, Leaf]
    named: tuple[str, str]  # How messages call the features and the targets as a whole.
    dataset: tf.data.Dataset | None = None


# ----- the data as leaves --------------------------------------------------------------
def _is_string(dtype: Any) -> bool:
    if isinstance(dtype, tf.dtypes.DType):
        return bool(dtype == tf.string)
    return np.dtype(dtype).kind in "USO"


def _array_leaf(value: Any, what: str) -> Leaf:
    array = value.numpy() if isinstance(value, tf.Tensor) else np.asarray(value)
    is_string = _is_string(array.dtype) and (
        array.dtype.kind != "O" or (array.size > 0 and isinstance(array.flat[0], (str, bytes)))
    )
    return Leaf(what, tuple(array.shape), is_string, array, whole=True)


def _keyed(value: Any, what: str) -> Iterator[tuple[Any, str, Any]]:
    """`(key, name, leaf)` of a nest: dict keys, list positions, or 0 for one array."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield key, f"{what}[{key!r}]", item
    elif (
        isinstance(value, (list, tuple))
        and value
        and (isinstance(value[0], tf.TypeSpec) or np.ndim(value[0]) > 0)
    ):
        for index, item in enumerate(value):
            yield index, f"{what}[{index}]", item
    elif value is not None:
        yield 0, what, value


def arrays_data(x: Any, y: Any, *, features: str = "x", labels: str = "y") -> Data:
    """NumPy (or eager tensor) data, read whole."""
    return Data(
        features={key: _array_leaf(item, name) for key, name, item in _keyed(x, features)},
        targets={key: _array_leaf(item, name) for key, name, item in _keyed(y, labels)},
        named=(features, labels),
    )


def dataset_data(dataset: tf.data.Dataset, *, name: str, own: bool = False) -> Data:
    """A batched dataset of `x`, `(x, y)` or `(x, y, sample_weight)`: its spec, and its
    first batch unless reading it could change later passes (`tfdist.data.peek`).

    `own`: one of tfdist's own sources, whose caches hold one whole table: read it."""
    spec_x, spec_y, _ = keras.utils.unpack_x_y_sample_weight(dataset.element_spec)
    first = next(iter(dataset.take(1)), None) if own else first_element(dataset)[1]
    batch_x, batch_y, _ = (
        keras.utils.unpack_x_y_sample_weight(tf.nest.map_structure(np.asarray, first))
        if first is not None
        else (None, None, None)
    )
    features, labels = f"features of {name}", name

    def leaves(spec: Any, batch: Any, what: str) -> dict[Any, Leaf]:
        found = {}
        values = {key: item for key, _, item in _keyed(batch, what)}
        for key, leaf_name, item in _keyed(spec, what):
            if not isinstance(item, tf.TensorSpec):
                continue  # Ragged or sparse: Keras' own rules apply.
            value = values.get(key)
            shape = tuple(item.shape.as_list()) if item.shape.rank is not None else None
            if shape is None:
                continue
            if value is not None and len(value.shape) == len(shape):  # Unknown dims: read.
                shape = (None,) + tuple(
                    s if s is not None else v
                    for s, v in zip(shape[1:], value.shape[1:], strict=True)
                )
            found[key] = Leaf(leaf_name, shape, _is_string(item.dtype), value, whole=False)
        return found

    return Data(
        features=leaves(spec_x, batch_x, features),
        targets=leaves(spec_y, batch_y, labels),
        named=(features, labels),
        dataset=dataset,
    )


# ----- the messages ----------------------------------------------------------------------
def _dims(shape: Shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _has(leaf: Leaf, one: str = "has", many: str = "have") -> str:
    """The verb for `leaf.what`: "x has", "features of dataset x have"."""
    return many if leaf.what.startswith("features of") else one


def out_of_range_message(labels: str, label: int, classes: int, output: str | None) -> str:
    """Sparse labels outside an output's classes: the one line for every place that sees it."""
    where = f"the model's output {output!r} has" if output else "of the model's output"
    bigger = f" or a model with {label + 1} outputs" if label >= classes else ""
    return (
        f"labels of {labels} hold {label}, outside the {classes} classes "
        f"(0..{classes - 1}) {where}; use labels 0..{classes - 1}{bigger}."
    )


def _strings_message(leaf: Leaf, loss: Loss, output: Tensor) -> str:
    values = leaf.values
    sample = values.flat[0] if values is not None and values.size else None
    text = sample.decode() if isinstance(sample, bytes) else str(sample)
    example = f" (e.g. {text!r})" if sample is not None else ""
    if leaf.whole and values is not None:
        count = len(np.unique(values))
        fix = (
            f"map the {count} class names to 0..{count - 1} first, e.g. "
            "names, y = np.unique(y, return_inverse=True)"
        )
    else:
        fix = "map the class names to integers first, e.g. with keras.layers.StringLookup"
    return (
        f"labels of {leaf.what} are strings{example} but the loss "
        f"{loss.name!r} of the model's output {output.name!r} needs numbers; {fix}."
    )


def _one_hot(values: np.ndarray | None) -> bool:
    if values is None or values.ndim < 2 or not np.issubdtype(values.dtype, np.number):
        return False
    return bool(np.isin(values, (0, 1)).all() and (values.sum(axis=-1) == 1).all())


def _sparse_width_message(leaf: Leaf, loss: Loss, output: Tensor, classes: int) -> str:
    takes = (
        f"the loss {loss.name!r} of the model's output {output.name!r} takes one class "
        f"index per example (0..{classes - 1})"
    )
    if _one_hot(leaf.values):
        return (
            f"labels of {leaf.what} are one-hot rows (shape {_dims(leaf.shape)}) but {takes}; turn "
            "them into class indices with argmax(axis=-1) or compile with "
            "loss='categorical_crossentropy'."
        )
    width = leaf.shape[-1]
    return (
        f"labels of {leaf.what} have {width} values per example (shape {_dims(leaf.shape)}) but "
        f"{takes}; give one label per example or compile with a loss for {width}-wide targets."
    )


def _indices_message(leaf: Leaf, loss: Loss, output: Tensor) -> str:
    classes = output.shape[-1]
    return (
        f"labels of {leaf.what} are class indices (shape {_dims(leaf.shape)}) but the loss "
        f"{loss.name!r} of the model's output {output.name!r} takes one-hot rows of "
        f"{classes}; compile with loss='sparse_categorical_crossentropy' or one-hot "
        f"encode them (keras.utils.to_categorical(labels, {classes}))."
    )


def _width_message(leaf: Leaf, loss: Loss, output: Tensor) -> str:
    got, want = leaf.shape[-1], output.shape[-1]
    if loss.categorical and len(output.shape) == len(leaf.shape) == 2:
        return (
            f"labels of {leaf.what} are one-hot rows of {got} classes (shape "
            f"{_dims(leaf.shape)}) but "
            f"the model's output {output.name!r} has {want}; one-hot encode them with {want} "
            f"classes or give the output {got} units (keras.layers.Dense({got}))."
        )
    return (
        f"targets of {leaf.what} have shape {_dims(leaf.shape)} but the model's output "
        f"{output.name!r} gives {_dims(output.shape)}, and the loss {loss.name!r} needs "
        f"{loss.kind.value}; "
        f"give targets of shape {_dims((None,) + output.shape[1:])} or an output that "
        "matches them."
    )


def _rank_message(leaf: Leaf, reference: Tensor) -> str:
    shape, expected = leaf.shape, reference.shape
    return (
        f"{leaf.what} {_has(leaf)} shape {_dims(shape)} (rank {len(shape)}) but the model's input "
        f"{reference.name!r} takes batches of shape {_dims(expected)} (rank {len(expected)}); "
        f"give it examples of shape {_dims(expected[1:])} or build the model with "
        f"keras.Input(shape={_dims(shape[1:])})."
    )


def _input_width_message(leaf: Leaf, reference: Tensor) -> str:
    shape, expected = leaf.shape, reference.shape
    build = f"or build the model with keras.Input(shape={_dims(shape[1:])})"
    if len(shape) == 2 and len(expected) == 2:
        return (
            f"{leaf.what} {_has(leaf)} {shape[1]} features per example (shape "
            f"{_dims(shape)}) but the model's input {reference.name!r} takes {expected[1]} "
            f"(batches of shape {_dims(expected)}); give it {expected[1]} columns {build}."
        )
    return (
        f"{leaf.what} {_has(leaf)} examples of shape {_dims(shape[1:])} but the model's input "
        f"{reference.name!r} takes {_dims(expected[1:])} (batches of shape "
        f"{_dims(expected)}); give it examples of shape {_dims(expected[1:])} {build}."
    )


# ----- the rules -------------------------------------------------------------------------
def _check_input(leaf: Leaf, reference: Tensor) -> None:
    if leaf.is_string and reference.dtype != "string":
        raise ConfigError(
            f"{leaf.what} {_has(leaf, 'holds', 'hold')} strings but the model's input "
            f"{reference.name!r} takes "
            f"{reference.dtype} numbers; turn them into numbers first, or take strings with "
            "keras.Input(dtype='string') and a StringLookup or TextVectorization layer."
        )
    shape, expected = list(leaf.shape), reference.shape
    if len(shape) == len(expected) + 1 and shape[-1] == 1:  # Keras squeezes a last axis of 1,
        shape = shape[:-1]
    elif len(shape) == len(expected) - 1 and expected[-1] == 1:  # or adds one.
        shape = shape + [1]
    if len(shape) != len(expected):
        raise ConfigError(_rank_message(leaf, reference))
    for got, want in zip(shape[1:], expected[1:], strict=True):
        if got is not None and want is not None and got != want:
            raise ConfigError(_input_width_message(leaf, reference))


def _outside(values: np.ndarray | None, classes: int, ignore_class: int | None) -> int | None:
    """The label furthest outside 0..classes-1, or None when all are inside."""
    if values is None or not values.size or not np.issubdtype(values.dtype, np.number):
        return None
    labels = values[values != ignore_class] if ignore_class is not None else values
    labels = labels[np.isfinite(labels)] if labels.dtype.kind == "f" else labels
    if not labels.size:
        return None
    high, low = int(labels.max()), int(labels.min())
    if high >= classes:
        return high
    return low if low < 0 else None


def _check_sparse(leaf: Leaf, loss: Loss, output: Tensor) -> None:
    classes = output.shape[-1]
    if classes is None:
        return
    if len(leaf.shape) == len(output.shape) and leaf.shape[-1] != 1:
        raise ConfigError(_sparse_width_message(leaf, loss, output, classes))
    if len(leaf.shape) in (len(output.shape) - 1, len(output.shape)):
        label = _outside(leaf.values, classes, loss.ignore_class)
        if label is not None:
            raise ConfigError(out_of_range_message(leaf.what, label, classes, output.name))


def _check_dense(leaf: Leaf, loss: Loss, output: Tensor) -> None:
    shape, expected = list(leaf.shape), list(output.shape)
    if len(shape) == len(expected) + 1 and shape[-1] == 1:  # As Keras' losses align ranks.
        shape = shape[:-1]
    elif len(expected) == len(shape) + 1 and expected[-1] == 1:
        shape = shape + [1]
    if loss.categorical and len(shape) == len(expected) - 1:
        raise ConfigError(_indices_message(leaf, loss, output))
    if len(shape) != len(expected):
        if loss.kind is LossKind.EXACT:
            raise ConfigError(_width_message(leaf, loss, output))
        return
    for got, want in zip(shape[1:], expected[1:], strict=True):
        if got is None or want is None or got == want:
            continue
        if loss.kind is LossKind.BROADCAST and 1 in (got, want):
            continue
        raise ConfigError(_width_message(leaf, loss, output))


def check_data(io: ModelIO, data: Data) -> None:
    """Raises a one-line ConfigError for the first mistake of `data` for the model `io`."""
    if io.inputs and set(data.features) == set(io.inputs):
        for key, leaf in data.features.items():
            _check_input(leaf, io.inputs[key])
    for key, leaf in data.targets.items():
        loss, output = io.losses.get(key), io.outputs.get(key)
        if loss is None or output is None:
            continue
        if leaf.is_string:
            raise ConfigError(_strings_message(leaf, loss, output))
        if loss.kind is LossKind.SPARSE:
            _check_sparse(leaf, loss, output)
        else:
            _check_dense(leaf, loss, output)


# ----- after training diverged: NaN/inf in the data, or a bad label of a later batch ----
def _first_non_finite(leaf: Leaf, batch: int | None = None) -> str | None:
    values = leaf.values
    if values is None or values.dtype.kind not in "fc" or not values.size:
        return None
    bad = ~np.isfinite(values)
    if not bad.any():
        return None
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    value = values[where]
    name = "NaN" if np.isnan(value) else str(float(value))
    column = f", column {where[1]}" if values.ndim == 2 else ""
    rows = int(bad.reshape(len(values), -1).any(axis=1).sum())
    more = f" ({rows} rows hold NaN/inf)" if rows > 1 else ""
    of_batch = f"batch {batch}, " if batch is not None else ""
    holds = _has(leaf, "holds", "hold")
    return f"{leaf.what} {holds} {name} at {of_batch}row {where[0]}{column}{more}"


def _batches(data: Data) -> Iterator[tuple[int | None, Data]]:
    """`data` as arrays: itself when read whole, else each batch of its dataset in turn."""
    if data.dataset is None:
        yield None, data
        return
    features, labels = data.named
    for index, element in enumerate(data.dataset):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(tf.nest.map_structure(np.asarray, element))
        yield index, arrays_data(x, y, features=features, labels=labels)


def non_finite(data: Data) -> str | None:
    """Where `data` first holds NaN/inf, read whole (a dataset batch by batch), or None."""
    for index, part in _batches(data):
        for leaf in (*part.features.values(), *part.targets.values()):
            found = _first_non_finite(leaf, index)
            if found:
                return found
    return None


def check_every_batch(io: ModelIO, data: Data) -> None:
    """`check_data` on every batch of a dataset, not only its first: after a divergence,
    where a bad label makes the loss NaN instead of raising (as on a GPU)."""
    for _, part in _batches(data):
        check_data(io, part)
