"""Checks that what `tfdist.fit` is given reaches the loop, under any synchronous strategy.

Each builds a small model in `dist`'s scope, trains it through `tfdist.fit`, and asserts on
what happened; under `multi_worker` every worker runs them (they are collective) and
`replica_weights_by_batch` reports this worker's own copy of the weights.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

import tfdist
from tfdist.data.sources import load_digits_arrays

X, Y = load_digits_arrays()
X, Y = X[:1280].astype(np.float32), Y[:1280]


def _model(dist, *, optimizer, loss="sparse_categorical_crossentropy", metrics=("accuracy",)):
    keras.utils.set_random_seed(0)
    with dist.scope():
        model = keras.Sequential(
            [
                keras.Input((8, 8)),
                keras.layers.Flatten(),
                keras.layers.Dense(16, activation="relu", name="hidden"),
                keras.layers.Dense(10, activation="softmax", name="head"),
            ]
        )
        model.compile(optimizer=optimizer, loss=loss, metrics=list(metrics))
    return model


def _local_copies(dist, variable) -> list[np.ndarray]:
    """This process's copies of `variable`: one per local replica."""
    return [np.asarray(v) for v in dist.strategy.experimental_local_results(variable.value)]


class _ReplicaWeights(keras.callbacks.Callback):
    """At each batch's end, the first kernel as each local replica holds it."""

    def __init__(self, dist):
        super().__init__()
        self.dist, self.seen = dist, []

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append(_local_copies(self.dist, self.model.trainable_weights[0]))


def replica_weights_by_batch(dist, *, sync_every: int, steps: int) -> list[list[np.ndarray]]:
    """The first kernel's local copies after each of `steps` steps of local SGD."""
    model = _model(dist, optimizer=keras.optimizers.SGD(0.1))
    recorder = _ReplicaWeights(dist)
    tfdist.fit(
        model,
        X,
        Y,
        batch_size=64,
        epochs=1,
        steps_per_epoch=steps,
        steps_per_loop=1,
        sync_every=sync_every,
        shuffle=False,
        verbose=0,
        callbacks=[recorder],
    )
    return recorder.seen


def _weights(model) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.get_weights()]


def check_recompile_takes_effect(dist) -> None:
    """A second compile() changes the optimizer, loss and metrics the next fit and evaluate use."""
    model = _model(dist, optimizer=keras.optimizers.SGD(0.0))
    before = _weights(model)
    tfdist.fit(model, X, Y, batch_size=64, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, _weights(model), strict=True))

    with dist.scope():
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    tfdist.fit(model, X, Y, batch_size=64, epochs=1, verbose=0)
    moved = _weights(model)
    assert any(not np.array_equal(a, b) for a, b in zip(before, moved, strict=True)), (
        "SGD(0.1) after recompiling from SGD(0.0) must move the weights"
    )

    with dist.scope():  # Another loss and other metrics.
        model.compile(
            optimizer=keras.optimizers.SGD(0.0),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=False, name="xent"),
            metrics=[keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3")],
        )
    logs = tfdist.evaluate(model, X, Y, batch_size=64, return_dict=True)
    assert set(logs) == {"loss", "top3"}, logs
    history = tfdist.fit(model, X, Y, batch_size=64, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "top3"}, history.history
    assert all(np.array_equal(a, b) for a, b in zip(moved, _weights(model), strict=True))

    with dist.scope():  # Cross-entropy of one-hot labels; no metrics.
        model.compile(
            optimizer=keras.optimizers.SGD(0.0), loss="categorical_crossentropy", metrics=[]
        )
    one_hot = keras.utils.to_categorical(Y, 10)
    logs = tfdist.evaluate(model, X, one_hot, batch_size=64, return_dict=True)
    assert set(logs) == {"loss"}, logs
    expected = float(tf.reduce_mean(keras.losses.categorical_crossentropy(one_hot, model(X))))
    assert abs(logs["loss"] - expected) < 1e-4, (logs, expected)


def check_frozen_layer_stays_frozen(dist) -> None:
    """`layer.trainable = False` then compile(): the next fit leaves that layer as it was."""
    model = _model(dist, optimizer=keras.optimizers.SGD(0.1))
    tfdist.fit(model, X, Y, batch_size=64, epochs=1, verbose=0)  # Builds the trainer.
    hidden = model.get_layer("hidden")
    frozen = [np.asarray(w) for w in hidden.get_weights()]
    head = [np.asarray(w) for w in model.get_layer("head").get_weights()]
    hidden.trainable = False
    with dist.scope():
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    tfdist.fit(model, X, Y, batch_size=64, epochs=1, verbose=0)
    for old, new in zip(frozen, hidden.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    assert any(
        not np.array_equal(old, new)
        for old, new in zip(head, model.get_layer("head").get_weights(), strict=True)
    ), "the head must still train"
