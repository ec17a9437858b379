"""The state of a compiled model's metrics as one vector: summed, logged, saved, restored.

Owns how the loops see `model.metrics` (the loss tracker, the compiled metrics, the
per-output loss trackers and a model's own metrics): their variables packed into one
flat float64 vector. The synchronous loops sum every replica's part of it in one
all-reduce inside the compiled call, so the logs a call returns cost one collective and
every worker computes them at the same point; parameter-server workers update a copy of
it in a stateless scope and return the change, which the coordinator adds (two workers'
read-then-write updates of ps variables would race). The same vector is what a
checkpoint keeps of an epoch in progress, so a resumed epoch reports all of its steps.
Results are Keras' own (`Metric.stateless_result`), named as `model.get_metrics_result`
names them. The loops belong to `tfdist.training.runners`, the step to
`tfdist.training.step`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf
from keras.src import backend as keras_backend

Logs = dict[str, tf.Tensor]


def _is_summed(variable) -> bool:
    return getattr(variable, "aggregation", "sum") == "sum"


class MetricState:
    """The variables of `metrics` as one flat vector, and the logs it gives.

    Args:
      metrics: the model's metrics (`model.metrics`), built.
    """

    def __init__(self, metrics: Sequence[keras.metrics.Metric]):
        self.metrics = list(metrics)
        self.variables = [v for metric in self.metrics for v in metric.variables]
        self._shapes = [tuple(v.shape) for v in self.variables]
        self._sizes = [math.prod(shape) for shape in self._shapes]
        self._dtypes = [v.dtype for v in self.variables]
        self.size = sum(self._sizes)

    @property
    def summable(self) -> bool:
        """Whether every variable adds up across workers (Keras' `aggregation="sum"`)."""
        return all(_is_summed(v) for v in self.variables)

    # ----- packing ---------------------------------------------------------------------
    def pack(self, values: Sequence[tf.Tensor]) -> tf.Tensor:
        """One float64 vector of `values` (one tensor per variable)."""
        if not values:
            return tf.zeros([0], tf.float64)
        return tf.concat([tf.reshape(tf.cast(v, tf.float64), [-1]) for v in values], 0)

    def unpack(self, flat: tf.Tensor) -> list[tf.Tensor]:
        """The tensors of `flat`, shaped and typed as the variables."""
        parts = tf.split(flat, self._sizes) if self._sizes else []
        return [
            tf.cast(tf.reshape(part, shape), dtype)
            for part, shape, dtype in zip(parts, self._shapes, self._dtypes, strict=True)
        ]

    def zeros(self) -> list[tf.Tensor]:
        return [
            tf.zeros(shape, dtype) for shape, dtype in zip(self._shapes, self._dtypes, strict=True)
        ]

    def local(self) -> tf.Tensor:
        """This replica's part of the state (in replica context), or the whole (outside)."""
        return self.pack([v.value for v in self.variables])

    def summed(self, strategy: tf.distribute.Strategy) -> tf.Tensor:
        """The state summed over every replica and worker: one all-reduce (in a function)."""
        local = strategy.run(self.local)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, local, axis=None)

    # ----- logs ------------------------------------------------------------------------
    def results(self, flat: tf.Tensor) -> Logs:
        """The metrics' results for the state `flat`, as `model.get_metrics_result` names them."""
        values = self.unpack(flat)
        logs: Logs = {}
        start = 0
        for metric in self.metrics:
            count = len(metric.variables)
            result = metric.stateless_result(values[start : start + count])
            start += count
            if isinstance(result, dict):
                logs.update(result)
            else:
                logs[metric.name] = result
        return logs

    # ----- writing ---------------------------------------------------------------------
    def assign(self, flat: tf.Tensor) -> None:
        """Writes `flat` into the variables (cross-replica: a sum is split over replicas)."""
        for variable, value in zip(self.variables, self.unpack(flat), strict=True):
            variable.assign(value)

    def stateless(self, state: list[tf.Tensor], update: Callable[[], object], also: Sequence = ()):
        """Runs `update` with the variables read from and written to `state`.

        `also`: more `(variable, value)` pairs `update` reads (a worker's own copy of the
        weights, `tfdist.training.ps_local_steps`).

        Returns `(update's result, the new state)`: what a parameter-server worker does
        instead of writing the ps variables.
        """
        mapping = list(zip(self.variables, state, strict=True)) + list(also)
        with keras_backend.StatelessScope(state_mapping=mapping) as scope:
            result = update()
        return result, [scope.get_current_value(v) for v in self.variables]
