"""Whether a model's weights are still finite: one boolean per compiled call, cheaply.

Owns the check the controller makes after each of the runner's segments, beside the
loss's: a NaN in the inputs can turn the weights to NaN while Keras' clipped
cross-entropy keeps the loss finite, and the run would go on training nothing. The check
is one compiled function that reduces each weight where it lives (this worker's copy of a
mirrored variable, a parameter server's variable on that server) to one boolean, so only
booleans travel and no collective runs: every `multi_worker` worker reads its own copy,
equal on all of them after the all-reduce, and reaches the same answer. Stopping is the
controller's (`TrainingDiverged`, `tfdist.training.history`).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


def _parts(variable: Any) -> list[Any]:
    """The TensorFlow variables behind a Keras weight (a partitioned one's shards)."""
    value = getattr(variable, "value", variable)
    return list(getattr(value, "variables", None) or [value])


class FiniteWeights:
    """`check()` is True while every floating trainable weight of `model` is finite, and
    `optimizer_check()` while its optimizer's state is (slots, learning rate): a checkpoint
    of finite weights with NaN slots would diverge again at its first step."""

    def __init__(self, model: keras.Model, optimizer: Any = None):
        self._parts = _floating_parts(model.trainable_variables)
        slots = list(getattr(optimizer, "variables", None) or [])
        self._slots = _floating_parts(slots)
        self._call = tf.function(lambda: _all_finite(self._parts))
        self._call_slots = tf.function(lambda: _all_finite(self._slots))

    def check(self) -> bool:
        return not self._parts or bool(self._call())

    def optimizer_check(self) -> bool:
        return not self._slots or bool(self._call_slots())


def _floating_parts(variables: list) -> list:
    return [part for variable in variables for part in _parts(variable) if part.dtype.is_floating]


def _all_finite(parts: list) -> tf.Tensor:
    found = [tf.constant(True)]
    for part in parts:
        with tf.device(part.device):
            found.append(tf.reduce_all(tf.math.is_finite(part)))
    return tf.reduce_all(tf.stack(found))
