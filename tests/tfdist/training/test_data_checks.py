"""The checks of data against a model, without training: several inputs and outputs by name
and by position, what they leave to Keras (a user's own loss or train_step, a model that
names no inputs), the right data of every shape Keras accepts; and the finite-weights check."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdist
from tfdist.config import ConfigError
from tfdist.training.data_checks import (
    arrays_data,
    check_data,
    check_every_batch,
    dataset_data,
    non_finite,
)
from tfdist.training.divergence import FiniteWeights
from tfdist.training.model_io import LossKind, model_io

ROWS = 8
RNG = np.random.default_rng(0)


def _two_by_two(losses):
    """Inputs 'a' (4) and 'b' (2); outputs 'cls' (3 classes) and 'reg' (1)."""
    a, b = keras.Input((4,), name="a"), keras.Input((2,), name="b")
    joined = keras.layers.Concatenate()([a, b])
    cls = keras.layers.Dense(3, name="cls")(joined)
    reg = keras.layers.Dense(1, name="reg")(joined)
    if isinstance(losses, dict):
        model = keras.Model({"a": a, "b": b}, {"cls": cls, "reg": reg})
    else:
        model = keras.Model([a, b], [cls, reg])
    model.compile(optimizer="sgd", loss=losses)
    return model


def _x(width_b=2):
    return {"a": RNG.normal(size=(ROWS, 4)), "b": RNG.normal(size=(ROWS, width_b))}


def _check(model, x, y):
    check_data(model_io(model), arrays_data(x, y))


def test_inputs_and_outputs_by_name():
    model = _two_by_two({"cls": "sparse_categorical_crossentropy", "reg": "mse"})
    io = model_io(model)
    assert {k: (t.name, t.shape) for k, t in io.inputs.items()} == {
        "a": ("a", (None, 4)),
        "b": ("b", (None, 2)),
    }
    assert io.losses["cls"].kind is LossKind.SPARSE and io.losses["reg"].kind is LossKind.BROADCAST
    y = {"cls": np.arange(ROWS) % 3, "reg": RNG.normal(size=(ROWS, 1))}
    _check(model, _x(), y)

    with pytest.raises(ConfigError, match=r"^x\['b'\] has 3 features per example .* input 'b' "):
        _check(model, _x(width_b=3), y)
    with pytest.raises(ConfigError, match=r"^labels of y\['cls'\] hold 7, .* output 'cls' has;"):
        _check(model, _x(), dict(y, cls=np.arange(ROWS)))


def test_inputs_and_outputs_by_position():
    model = _two_by_two(["sparse_categorical_crossentropy", "mse"])
    x = [_x()["a"], _x()["b"]]
    _check(model, x, [np.arange(ROWS) % 3, RNG.normal(size=(ROWS, 2))])  # (8, 1) broadcasts.
    one_hot = keras.utils.to_categorical(np.arange(ROWS) % 3, 3)
    with pytest.raises(ConfigError, match=r"^labels of y\[0\] are one-hot rows \(shape \(8, 3\)\)"):
        _check(model, x, [one_hot, RNG.normal(size=(ROWS,))])


def test_a_users_own_loss_or_train_step_keeps_its_own_rules():
    model = _two_by_two([lambda y_true, y_pred: 0.0, "mse"])
    x, one_hot = list(_x().values()), keras.utils.to_categorical(np.arange(ROWS) % 3, 3)
    assert 0 not in model_io(model).losses
    _check(model, x, [one_hot, RNG.normal(size=(ROWS, 1))])

    class OwnStep(keras.Model):
        def train_step(self, data):
            return {}

    inputs = keras.Input((4,))
    own = OwnStep(inputs, keras.layers.Dense(3)(inputs))
    own.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    assert model_io(own).own_steps and not model_io(own).losses
    _check(own, _x()["a"], one_hot)


def test_models_that_name_no_inputs_are_left_to_keras():
    unbuilt = keras.Sequential([keras.layers.Dense(3)])
    unbuilt.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    assert not model_io(unbuilt).inputs and not model_io(unbuilt).outputs
    _check(unbuilt, RNG.normal(size=(ROWS, 7)), np.arange(ROWS) % 5)


def test_strings_for_a_string_input_and_an_ignored_class():
    words = keras.Input((1,), dtype="string", name="words")
    ids = keras.layers.StringLookup(vocabulary=["a", "b"])(words)
    out = keras.layers.Dense(3, name="cls")(keras.layers.CategoryEncoding(3)(ids))
    model = keras.Model(words, out)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=-1))
    _check(model, np.array([["a"], ["b"]] * 4), np.array([0, -1] * 4))
    with pytest.raises(ConfigError, match=r"labels of y hold 3, outside the 3 classes"):
        _check(model, np.array([["a"], ["b"]] * 4), np.array([0, 3] * 4))

    numbers = keras.Input((1,), name="numbers")
    plain = keras.Model(numbers, keras.layers.Dense(1)(numbers))
    plain.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ConfigError, match=r"^x holds strings but the model's input 'numbers'"):
        _check(plain, np.array([["a"]] * ROWS), np.zeros(ROWS))


def test_a_dataset_of_dicts_by_its_spec_and_first_batch():
    model = _two_by_two({"cls": "sparse_categorical_crossentropy", "reg": "mse"})
    y = {"cls": np.arange(ROWS) % 3, "reg": np.ones((ROWS, 1))}
    good = tf.data.Dataset.from_tensor_slices((_x(), y)).batch(4)
    check_data(model_io(model), dataset_data(good, name="dataset x"))

    x = _x()
    x["a"][6, 2] = np.inf
    late = dataset_data(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), name="dataset x")
    assert non_finite(late) == "features of dataset x['a'] hold inf at batch 1, row 2, column 2"


def test_a_bad_label_after_the_first_batch_is_found_by_reading_every_batch():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="cls")(inputs))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    y = np.arange(ROWS) % 3
    y[-1] = 5
    data = dataset_data(
        tf.data.Dataset.from_tensor_slices((_x()["a"], y)).batch(4), name="dataset x"
    )
    check_data(model_io(model), data)  # Its first batch is fine.
    with pytest.raises(ConfigError, match=r"^labels of dataset x hold 5, outside the 3 classes"):
        check_every_batch(model_io(model), data)


def test_finite_weights_under_mirrored():
    dist = tfdist.make_strategy("mirrored", cluster=None)
    with dist.scope():
        inputs = keras.Input((4,))
        model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    weights = FiniteWeights(model)
    assert weights.check()
    model.layers[-1].bias.assign([0.0, np.nan, 0.0])
    assert not weights.check()
