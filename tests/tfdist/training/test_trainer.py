"""The training loop in this process: one_device and mirrored over two logical CPUs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdist.config import ConfigError
from tfdist.data.pipeline import load_source, make_dataset_fn, steps_per_epoch
from tfdist.distribute.strategies import make_strategy
from tfdist.models import build_model
from tfdist.training.trainer import Trainer

DIGITS = load_source("digits")


def _digits_fns(batch=64, shuffle=True):
    train = make_dataset_fn(
        DIGITS, "train", global_batch_size=batch, training=True, shuffle=shuffle
    )
    val = make_dataset_fn(DIGITS, "validation", global_batch_size=batch, training=False)
    return train, val


def _trainer(kind, *, batch=64, optimizer="adam", **kwargs):
    distribution = make_strategy(kind)
    keras.utils.set_random_seed(0)
    with distribution.strategy.scope():
        model = build_model("mlp", input_shape=DIGITS.input_shape, num_classes=10)
    return Trainer(
        distribution, model=model, optimizer=optimizer, global_batch_size=batch, **kwargs
    )


@pytest.mark.parametrize("kind", ["one_device", "mirrored"])
def test_digits_reach_accuracy(kind):
    trainer = _trainer(kind, steps_per_loop=8)
    train, val = _digits_fns()
    history = trainer.fit(
        train, epochs=15, steps_per_epoch=steps_per_epoch(DIGITS, 64), validation_fn=val
    )
    assert len(history.epochs) == 15 and history.final_step == 15 * 23
    assert history.epochs[-1].val_accuracy >= 0.93
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss
    assert history.epochs[-1].examples == 23 * 64  # Every step's examples counted once.
    assert history.examples_per_sec() > 0


def test_validation_counts_every_example_across_replicas():
    trainer = _trainer("mirrored")
    train, val = _digits_fns()
    history = trainer.fit(train, epochs=1, steps_per_epoch=1, validation_fn=val)
    totals = trainer._val_totals.numpy()
    assert totals[2] == 297 and history.epochs[0].val_accuracy == pytest.approx(totals[1] / 297)


def test_resume_from_checkpoint_and_export(tmp_path):
    train, val = _digits_fns()
    first = _trainer("mirrored")
    first.fit(train, epochs=2, steps_per_epoch=5, validation_fn=val, model_dir=str(tmp_path))
    assert (tmp_path / "model.keras").exists()
    resumed = _trainer("mirrored")
    history = resumed.fit(
        train, epochs=4, steps_per_epoch=5, validation_fn=val, model_dir=str(tmp_path)
    )
    assert history.restored_from.endswith("ckpt-10")
    assert [e.epoch for e in history.epochs] == [3, 4] and history.final_step == 20
    exported = keras.saving.load_model(tmp_path / "model.keras")
    x = np.random.default_rng(0).random((4, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(exported(x), resumed.model(x), atol=1e-6)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    train, _ = _digits_fns()
    _trainer("one_device").fit(train, epochs=1, steps_per_epoch=2, model_dir=str(tmp_path))
    distribution = make_strategy("one_device")
    with distribution.strategy.scope():
        other = keras.Sequential(
            [
                keras.Input((8, 8)),
                keras.layers.Flatten(),
                keras.layers.Dense(7),
                keras.layers.Dense(10),
            ]
        )
    trainer = Trainer(distribution, model=other, global_batch_size=64)
    with pytest.raises(ConfigError, match=r"does not fit this model.*; use another model_dir or"):
        trainer.fit(train, epochs=2, steps_per_epoch=2, model_dir=str(tmp_path))


def test_global_batch_must_divide_over_replicas():
    with pytest.raises(
        ConfigError,
        match=r"global_batch_size \(33\) must be divisible by the "
        r"number of replicas \(2\); use 32 or 34",
    ):
        _trainer("mirrored", batch=33)


def test_loss_must_be_per_example():
    trainer = _trainer("one_device", loss=lambda y, p: tf.reduce_mean(p))
    train, _ = _digits_fns()
    with pytest.raises(ConfigError, match=r"loss returned a scalar"):
        trainer.fit(train, epochs=1, steps_per_epoch=1)


def test_sgd_steps_match_between_one_device_and_mirrored():
    """The all-reduced mean gradient equals the one-device gradient of the same global batch."""
    weights = []
    for kind in ("one_device", "mirrored"):
        trainer = _trainer(kind, optimizer="sgd", learning_rate=0.1)
        train, _ = _digits_fns(shuffle=False)
        trainer.fit(train, epochs=1, steps_per_epoch=20)
        weights.append([w.numpy() for w in trainer.model.weights])
    for a, b in zip(*weights, strict=False):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("kind", ["one_device", "mirrored"])
def test_resume_from_a_step_checkpoint_at_an_epochs_last_step(kind, tmp_path):
    """Killed after the step checkpoint at the epoch's end, before the epoch-end save.

    The newest checkpoint then has step = steps_per_epoch and epoch 0: the resumed epoch
    has no steps left, and must still report the steps it ran before (once a
    ZeroDivisionError on every restart).
    """
    train, val = _digits_fns()

    def broken_validation(context):  # Fails when read, after the step checkpoint.
        return val(context).map(lambda x, y: (tf.debugging.check_numerics(x * np.inf, "x"), y))

    first = _trainer(kind)
    with pytest.raises(tf.errors.InvalidArgumentError):
        first.fit(
            train,
            epochs=2,
            steps_per_epoch=8,
            validation_fn=broken_validation,
            model_dir=str(tmp_path),
            checkpoint_every_steps=8,
        )
    assert int(first.step.numpy()) == 8 and int(first.epoch.numpy()) == 0
    resumed = _trainer(kind)
    history = resumed.fit(
        train,
        epochs=2,
        steps_per_epoch=8,
        validation_fn=val,
        model_dir=str(tmp_path),
        checkpoint_every_steps=8,
    )
    assert history.restored_from.endswith("ckpt-8")
    first_epoch, second = history.epochs
    assert first_epoch.epoch == 1 and first_epoch.steps == 0 and first_epoch.examples == 8 * 64
    assert first_epoch.train_loss > 0 and first_epoch.val_accuracy is not None
    assert second.epoch == 2 and second.examples == 8 * 64 and history.final_step == 16


def test_one_hot_labels_and_a_softmax_model_train_with_the_builtin_accuracy():
    """The classic MNIST MLP through the Trainer: one-hot labels, categorical_crossentropy."""
    from tfdist.data.sources import load_digits_arrays, numpy_source

    images, labels = load_digits_arrays()
    one_hot = keras.utils.to_categorical(labels, 10)
    source = numpy_source(images[:1500], one_hot[:1500], validation=(images[1500:], one_hot[1500:]))
    assert source.num_classes == 10
    distribution = make_strategy("mirrored")
    keras.utils.set_random_seed(0)
    with distribution.strategy.scope():
        model = keras.Sequential(
            [
                keras.Input((8, 8)),
                keras.layers.Flatten(),
                keras.layers.Dense(64, activation="relu"),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
    trainer = Trainer(
        distribution, model=model, global_batch_size=64, loss=keras.losses.categorical_crossentropy
    )
    train = make_dataset_fn(source, "train", global_batch_size=64, training=True)
    val = make_dataset_fn(source, "validation", global_batch_size=64, training=False)
    history = trainer.fit(train, epochs=10, steps_per_epoch=23, validation_fn=val)
    assert history.epochs[-1].train_accuracy > 0.9 and history.epochs[-1].val_accuracy > 0.8


def test_numpy_source_takes_float_and_multi_output_targets():
    from tfdist.data.sources import numpy_source

    features = np.random.default_rng(0).random((40, 3)).astype(np.float64)
    regression = numpy_source(features, features.sum(axis=1))
    assert regression.num_classes is None
    ((x, y),) = regression.split("train").records().take(1).as_numpy_iterator()
    assert y.dtype == np.float32
    both = numpy_source(features, {"sum": features.sum(axis=1), "label": np.arange(40) % 3})
    assert both.num_train == 40
