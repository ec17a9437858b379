"""`compile(jit_compile=...)` is honoured as Keras honours it: XLA in the step, or not.

Keras resolves `jit_compile` ("auto" is off on CPUs and under a strategy; `True` is XLA
wherever it can compile) and compiles its step with XLA when it is on; tfdist reads the
same resolved value and runs its forward and backward pass as one XLA computation. The
evidence that XLA runs is what XLA refuses: a layer calling `tf.numpy_function` (a host
callback XLA cannot compile) fails under `jit_compile=True` in Keras' fit and in tfdist's
alike, and trains in both without it. Under XLA the weights still equal Keras' own.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdist

X = np.random.default_rng(0).normal(size=(23, 4)).astype("float32")  # Last batch: 3 rows.
Y = np.arange(23) % 3


class HostDoubling(keras.layers.Layer):
    """Doubles its input on the host (`tf.numpy_function`), which XLA cannot compile."""

    def call(self, x):
        return tf.ensure_shape(tf.numpy_function(lambda a: a * 2, [x], tf.float32), x.shape)


def _model(scope, *, jit_compile, host_layer=False):
    keras.utils.set_random_seed(0)
    with scope:
        layers = [keras.Input((4,))]
        if host_layer:
            layers.append(HostDoubling())
        layers += [keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)]
        model = keras.Sequential(layers)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            jit_compile=jit_compile,
        )
    return model


def _strategy(kind):
    return tfdist.make_strategy(kind, cluster=None)


def _fit(model, front):
    kwargs = dict(batch_size=4, epochs=2, shuffle=False, verbose=0)
    if front == "keras":
        return model.fit(X, Y, **kwargs)
    return tfdist.fit(model, X, Y, **kwargs)


@pytest.mark.parametrize("kind", ["one_device", "mirrored"])
def test_jit_compile_true_trains_to_keras_own_weights(kind):
    reference = _model(tf.distribute.get_strategy().scope(), jit_compile=True)
    expected = _fit(reference, "keras").history
    model = _model(_strategy(kind).scope(), jit_compile=True)

    history = _fit(model, "tfdist").history

    assert model.jit_compile is True
    for key, values in expected.items():
        np.testing.assert_allclose(history[key], values, rtol=1e-5, atol=1e-6)
    for got, want in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["one_device", "mirrored"])
def test_jit_compile_true_puts_the_step_under_xla_as_keras_does(kind):
    keras_model = _model(tf.distribute.get_strategy().scope(), jit_compile=True, host_layer=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="unsupported operations"):
        _fit(keras_model, "keras")
    model = _model(_strategy(kind).scope(), jit_compile=True, host_layer=True)

    with pytest.raises(tf.errors.InvalidArgumentError, match="unsupported operations"):
        _fit(model, "tfdist")


@pytest.mark.parametrize("kind", ["one_device", "mirrored"])
def test_jit_compile_false_keeps_the_step_out_of_xla(kind):
    keras_model = _model(tf.distribute.get_strategy().scope(), jit_compile=False, host_layer=True)
    model = _model(_strategy(kind).scope(), jit_compile=False, host_layer=True)

    expected = _fit(keras_model, "keras").history
    history = _fit(model, "tfdist").history

    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-5)


def test_jit_compile_auto_is_off_under_a_strategy_as_in_keras():
    model = _model(_strategy("mirrored").scope(), jit_compile="auto")

    assert model.jit_compile is False  # Keras' own resolution, which tfdist reads.
    _fit(model, "tfdist")


class HostSGD(keras.optimizers.SGD):
    """SGD whose update passes the gradient through the host, which XLA cannot compile."""

    def update_step(self, gradient, variable, learning_rate):
        on_host = tf.numpy_function(lambda g: g, [gradient], gradient.dtype)
        super().update_step(tf.ensure_shape(on_host, gradient.shape), variable, learning_rate)


def _host_update_model(strategy):
    model = _model(strategy.scope(), jit_compile=True)
    with strategy.scope():
        model.compile(
            optimizer=HostSGD(0.1), loss="sparse_categorical_crossentropy", jit_compile=True
        )
    return model


def test_with_one_replica_the_optimizers_update_is_under_xla_too_as_in_keras():
    """Keras compiles its whole step, the update included; so does tfdist with one replica
    (with several, the all-reduce sits between the pass and the update)."""
    for strategy, front in (
        (tf.distribute.get_strategy(), "keras"),
        (_strategy("one_device").strategy, "tfdist"),
    ):
        with pytest.raises(tf.errors.InvalidArgumentError, match="unsupported operations"):
            _fit(_host_update_model(strategy), front)
    _fit(_host_update_model(_strategy("mirrored").strategy), "tfdist")  # Updated outside XLA.
