"""What a compiled Keras model takes and gives, read from the model alone.

Owns the model's side of the data checks (`tfdist.training.data_checks`): each input's
name and batch shape (`model.inputs` of a functional or `keras.Input`-built Sequential
model), each output's name and shape (`model.outputs`), and the loss compiled on each
output sorted by what it asks of the targets (`LossKind`: class indices, one row per
example of the output's shape, or anything that broadcasts). What it cannot tell
(a subclassed model before it is built, a user's own loss function) it leaves out, so
the checks skip it and Keras decides as before. Every worker reads the same model, so
every worker gets the same answer.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any

import keras
from keras.src.losses import losses as keras_losses

from tfdist.training.step import overrides


class LossKind(enum.Enum):
    """What a loss asks of an output's targets."""

    SPARSE = "class indices"  # One integer class per example: sparse categorical cross-entropy.
    EXACT = "the output's shape"  # Categorical and binary cross-entropies: same shape.
    BROADCAST = "a shape that broadcasts to it"  # The other Keras losses (mse, mae, hinge...).


_SPARSE = {keras_losses.sparse_categorical_crossentropy}
_EXACT = {
    keras_losses.categorical_crossentropy,
    keras_losses.categorical_focal_crossentropy,
    keras_losses.binary_crossentropy,
    keras_losses.binary_focal_crossentropy,
}
_CATEGORICAL = {keras_losses.categorical_crossentropy, keras_losses.categorical_focal_crossentropy}


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One input or output of the model: its name and its batch shape (None: any size)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"


@dataclasses.dataclass(frozen=True)
class Loss:
    """The loss compiled on one output: how the user named it, and what it asks."""

    name: str
    kind: LossKind
    categorical: bool = False  # One-hot rows: categorical (focal) cross-entropy.
    ignore_class: int | None = None


@dataclasses.dataclass(frozen=True)
class ModelIO:
    """A compiled model's inputs, outputs and losses, by data key.

    Attributes:
      name: the model's name.
      inputs: `{key: Tensor}`; the key is how the data names the input (a dict key, a
        list position, or 0 for the only one); empty when the model does not say.
      outputs: `{key: Tensor}` likewise, for targets.
      losses: `{output key: Loss}` for the outputs whose loss tfdist knows.
      own_steps: the model brings its own `train_step`/`test_step`/`compute_loss`, so
        what its targets must be is its own business.
    """

    name: str
    inputs: Mapping[Any, Tensor]
    outputs: Mapping[Any, Tensor]
    losses: Mapping[Any, Loss]
    own_steps: bool

    def output_with_classes(self, classes: int) -> str | None:
        """The name of the one sparse-loss output of `classes` classes, if there is one."""
        names = [
            self.outputs[key].name
            for key, loss in self.losses.items()
            if loss.kind is LossKind.SPARSE and self.outputs[key].shape[-1:] == (classes,)
        ]
        return names[0] if len(names) == 1 else None


def _tensors(model: keras.Model, attribute: str, struct: str) -> dict[Any, Tensor]:
    try:
        flat = list(getattr(model, attribute) or [])
    except (AttributeError, ValueError):  # A Sequential or subclassed model not built yet.
        return {}
    if not flat:
        return {}
    names = [tensor._keras_history.operation.name for tensor in flat]
    shapes = [tuple(tensor.shape) for tensor in flat]
    dtypes = [str(tensor.dtype) for tensor in flat]
    nested = getattr(model, struct, None)
    if isinstance(nested, Mapping) and len(nested) == len(flat):
        keys: Sequence[Any] = list(nested)
    elif len(flat) == 1:
        keys = [0]
    else:
        keys = list(range(len(flat)))
    return {
        key: Tensor(name, shape, dtype)
        for key, name, shape, dtype in zip(keys, names, shapes, dtypes, strict=True)
    }


def _loss(identifier: Any) -> Loss | None:
    """What tfdist knows of a compiled loss: a Keras loss by name, class or function."""
    if isinstance(identifier, str):
        try:
            resolved = keras.losses.get(identifier)
        except ValueError:
            return None
        name = identifier
    else:
        resolved = identifier
        name = getattr(identifier, "__name__", None) or type(identifier).__name__
    function = getattr(resolved, "fn", resolved)
    kwargs = getattr(resolved, "_fn_kwargs", {}) or {}
    if getattr(function, "__module__", "") != keras_losses.__name__:
        return None  # The user's own loss: its rules are its own.
    if function in _SPARSE:
        kind = LossKind.SPARSE
    elif function in _EXACT:
        kind = LossKind.EXACT
    else:
        kind = LossKind.BROADCAST
    return Loss(
        name=name,
        kind=kind,
        categorical=function in _CATEGORICAL,
        ignore_class=kwargs.get("ignore_class"),
    )


def _losses(model: keras.Model, outputs: Mapping[Any, Tensor]) -> dict[Any, Loss]:
    compiled = getattr(model, "loss", None)
    if compiled is None or not outputs:
        return {}
    if isinstance(compiled, Mapping):
        by_name = {tensor.name: key for key, tensor in outputs.items()}
        pairs = [(by_name.get(name, name), loss) for name, loss in compiled.items()]
    elif isinstance(compiled, Sequence) and not isinstance(compiled, str):
        if len(compiled) != len(outputs):
            return {}
        pairs = list(zip(outputs, compiled, strict=True))
    else:
        pairs = [(key, compiled) for key in outputs]
    found = {}
    for key, identifier in pairs:
        loss = _loss(identifier) if key in outputs else None
        if loss is not None:
            found[key] = loss
    return found


def model_io(model: keras.Model) -> ModelIO:
    """What `model` takes and gives, as far as the model itself says."""
    inputs = _tensors(model, "inputs", "_inputs_struct")
    outputs = _tensors(model, "outputs", "_outputs_struct")
    own = any(overrides(model, m) for m in ("train_step", "test_step", "compute_loss"))
    return ModelIO(
        name=model.name,
        inputs=inputs,
        outputs=outputs,
        losses={} if own else _losses(model, outputs),
        own_steps=own,
    )
