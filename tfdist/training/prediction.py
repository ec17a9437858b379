"""Distributed `predict`: Keras' batches shared among the replicas, outputs in order.

Owns prediction as Keras' `predict` runs it, under every strategy: each of Keras' global
batches of `x` (`tfdist.data.global_batches`) is shared among the replicas
(`tfdist.data.replica_batches`: padded shares, never empty), each replica runs the
model's `predict_step` (overridden or not) on its share, and the shares' outputs are
gathered back in replica order and cut to the batch's rows, so every worker ends with
every output, in the order of `x`. Keras' predict hooks run per group of
`steps_per_execution` batches, with that group's outputs. Under `parameter_server` the
coordinator predicts itself, reading the variables from the ps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfdist.data.replica_batches import BATCH, META
from tfdist.distribute.strategies import Distribution
from tfdist.training.inputs import make_inputs, whole_split_context


def _gathered_step(model: keras.Model, distribution: Distribution) -> Callable:
    """A compiled step: one global batch's shares in, the batch's outputs out."""
    strategy = distribution.strategy

    def share_outputs(element: dict) -> Any:
        return model.predict_step(element[BATCH])

    def step(element: Any) -> Any:
        outputs = strategy.run(share_outputs, args=(element,))
        meta = strategy.experimental_local_results(element)[0][META]
        rows = meta[1]
        return tf.nest.map_structure(lambda t: strategy.gather(t, axis=0)[:rows], outputs)

    return tf.function(step)


def _coordinator_step(model: keras.Model) -> Callable:
    return tf.function(lambda element: model.predict_step(element[BATCH]))


def _concatenate(parts: list) -> Any:
    if len(parts) == 1:
        return parts[0]
    return tf.nest.map_structure(lambda *arrays: np.concatenate(arrays), *parts)


def predict_batches(
    model: keras.Model,
    distribution: Distribution,
    dataset_fn: Callable,
    *,
    steps: int | None,
    steps_per_execution: int,
    callbacks: keras.callbacks.CallbackList,
) -> Any:
    """Every output of `dataset_fn`'s batches, in order, with Keras' predict hooks."""
    if distribution.is_async:
        iterator = iter(dataset_fn(whole_split_context()))
        step = _coordinator_step(model)
    else:
        train, _ = make_inputs(distribution, dataset_fn, None)
        iterator, step = train, _gathered_step(model, distribution)
    outputs: list = []
    callbacks.on_predict_begin()
    index = 0
    while steps is None or index < steps:
        group: list = []
        callbacks.on_predict_batch_begin(index)
        for _ in range(steps_per_execution):
            if steps is not None and index + len(group) >= steps:
                break
            element = next(iterator, None)
            if element is None:
                break
            group.append(tf.nest.map_structure(np.asarray, step(element)))
        if not group:
            break
        batch_outputs = _concatenate(group)
        outputs.append(batch_outputs)
        callbacks.on_predict_batch_end(index + steps_per_execution - 1, {"outputs": batch_outputs})
        index += len(group)
        if len(group) < steps_per_execution:
            break
    callbacks.on_predict_end()
    if not outputs:
        raise ValueError("predict found no batches in x.")
    return _concatenate(outputs)
