"""The Trainer on dataset functions in this process: one_device and mirrored over two CPUs."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from compiled_models import DIGITS, digits_fns, digits_mlp

from tfdist.config import CheckpointConfig, ConfigError, LoopConfig
from tfdist.data.pipeline import make_dataset_fn, steps_per_epoch
from tfdist.distribute.strategies import make_strategy
from tfdist.training.trainer import Trainer


def _trainer(kind, *, optimizer="adam", learning_rate=1e-3, loop=None, seed=0):
    distribution = make_strategy(kind)
    model = digits_mlp(distribution, optimizer=optimizer, learning_rate=learning_rate, seed=seed)
    return Trainer(distribution, model, loop)


def _fit(trainer, train, **kwargs):
    kwargs.setdefault("global_batch_size", 64)
    return trainer.fit(train, **kwargs)


@pytest.mark.parametrize("kind", ["one_device", "mirrored"])
def test_digits_reach_accuracy(kind):
    trainer = _trainer(kind, loop=LoopConfig(steps_per_loop=8))
    train, val = digits_fns()
    history = _fit(
        trainer, train, epochs=15, steps_per_epoch=steps_per_epoch(DIGITS, 64), validation_fn=val
    )
    assert history.epoch == list(range(15)) and history.final_step == 15 * 23
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert history.last("val_accuracy") >= 0.93
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.timings[-1].examples == 23 * 64 and history.timings[-1].steps == 23
    assert history.examples_per_sec() > 0 and trainer.model.history is history


def test_validation_counts_every_example_across_replicas():
    """297 validation examples at batch 64 over 2 replicas: the partial batch counts once."""
    trainer = _trainer("mirrored")
    train, val = digits_fns()
    _fit(trainer, train, epochs=1, steps_per_epoch=1)
    logs = trainer.evaluate(val)
    assert int(trainer.model._loss_tracker.count.numpy()) == 297
    model = trainer.model
    x = np.concatenate([x for x, _ in DIGITS.split("validation").records().batch(297)])
    y = np.concatenate([y for _, y in DIGITS.split("validation").records().batch(297)])
    expected = np.mean(np.argmax(model(x), axis=-1) == y)
    assert logs["accuracy"] == pytest.approx(expected, abs=1e-6)


def test_resume_from_checkpoint_and_export(tmp_path):
    train, val = digits_fns()
    loop = LoopConfig(checkpoint=CheckpointConfig(model_dir=str(tmp_path)))
    _fit(_trainer("mirrored", loop=loop), train, epochs=2, steps_per_epoch=5, validation_fn=val)
    assert (tmp_path / "model.keras").exists()
    resumed = _trainer("mirrored", loop=loop)
    history = _fit(resumed, train, epochs=4, steps_per_epoch=5, validation_fn=val)
    assert history.restored_from.endswith("ckpt-10")
    assert history.epoch == [0, 1, 2, 3] and history.final_step == 20  # The whole run's.
    assert [timing.epoch for timing in history.timings] == [3, 4]  # This run's own.
    exported = keras.saving.load_model(tmp_path / "model.keras")
    x = np.random.default_rng(0).random((4, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(exported(x), resumed.model(x), atol=1e-6)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    train, _ = digits_fns()
    loop = LoopConfig(checkpoint=CheckpointConfig(model_dir=str(tmp_path)))
    _fit(_trainer("one_device", loop=loop), train, epochs=1, steps_per_epoch=2)
    distribution = make_strategy("one_device")
    with distribution.scope():
        other = keras.Sequential(
            [
                keras.Input((8, 8)),
                keras.layers.Flatten(),
                keras.layers.Dense(7),
                keras.layers.Dense(10),
            ]
        )
        other.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ConfigError, match=r"does not fit this model.*; use another model_dir or"):
        _fit(Trainer(distribution, other, loop), train, epochs=2, steps_per_epoch=2)


def test_global_batch_must_divide_over_replicas():
    train, _ = digits_fns(batch=64)
    with pytest.raises(
        ConfigError,
        match=r"global_batch_size \(33\) must be divisible by the "
        r"number of replicas \(2\); use 32 or 34",
    ):
        _trainer("mirrored").fit(train, epochs=1, steps_per_epoch=1, global_batch_size=33)


def test_an_uncompiled_model_is_refused():
    distribution = make_strategy("one_device")
    with distribution.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    with pytest.raises(ConfigError, match=r"is not compiled; call model.compile"):
        Trainer(distribution, model)


def test_sgd_steps_match_between_one_device_and_mirrored():
    """The all-reduced mean gradient equals the one-device gradient of the same global batch."""
    weights = []
    for kind in ("one_device", "mirrored"):
        trainer = _trainer(kind, optimizer="sgd", learning_rate=0.1)
        train, _ = digits_fns(shuffle=False)
        _fit(trainer, train, epochs=1, steps_per_epoch=20)
        weights.append([w.numpy() for w in trainer.model.weights])
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("kind", ["one_device", "mirrored"])
def test_resume_from_a_step_checkpoint_at_an_epochs_last_step(kind, tmp_path):
    """Killed after the step checkpoint at the epoch's end, before the epoch-end save.

    The newest checkpoint then has step = steps_per_epoch and epoch 0: the resumed epoch
    has no steps left, and must still report the steps it ran before, from the metric
    state the step checkpoint kept.
    """
    train, val = digits_fns()

    def broken_validation(context):  # Fails when read, after the step checkpoint.
        return val(context).map(lambda x, y: (tf.debugging.check_numerics(x * np.inf, "x"), y))

    loop = LoopConfig(
        checkpoint=CheckpointConfig(model_dir=str(tmp_path), checkpoint_every_steps=8)
    )
    first = _trainer(kind, loop=loop)
    with pytest.raises(tf.errors.InvalidArgumentError):
        _fit(first, train, epochs=2, steps_per_epoch=8, validation_fn=broken_validation)
    assert int(first.state.step.numpy()) == 8 and int(first.state.epoch.numpy()) == 0
    resumed = _trainer(kind, loop=loop)
    history = _fit(resumed, train, epochs=2, steps_per_epoch=8, validation_fn=val)
    assert history.restored_from.endswith("ckpt-8")
    first_epoch, second = history.timings
    assert first_epoch.epoch == 1 and first_epoch.steps == 0
    assert history.history["loss"][0] > 0 and history.history["val_accuracy"][0] is not None
    # The resumed epoch reports its 8 steps' loss: the same as the interrupted run had.
    assert second.epoch == 2 and second.examples == 8 * 64 and history.final_step == 16


def test_a_resumed_epoch_reports_the_same_logs_as_an_uninterrupted_one(tmp_path):
    """Stopped mid-epoch at a step checkpoint, resumed: the epoch's logs cover all its steps."""
    train, _ = digits_fns(shuffle=False)
    whole = _fit(
        _trainer("mirrored", optimizer="sgd", learning_rate=0.1),
        train,
        epochs=1,
        steps_per_epoch=10,
    )
    loop = LoopConfig(
        steps_per_loop=2,
        checkpoint=CheckpointConfig(model_dir=str(tmp_path), checkpoint_every_steps=4),
    )

    class StopAtStep4(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 5:  # The call after the step-4 checkpoint: a crash.
                raise KeyboardInterrupt

    first = _trainer("mirrored", optimizer="sgd", learning_rate=0.1, loop=loop)
    with pytest.raises(KeyboardInterrupt):
        _fit(first, train, epochs=1, steps_per_epoch=10, callbacks=[StopAtStep4()])
    resumed = _fit(
        _trainer("mirrored", optimizer="sgd", learning_rate=0.1, loop=loop),
        train,
        epochs=1,
        steps_per_epoch=10,
    )
    assert resumed.restored_from.endswith("ckpt-4") and resumed.timings[0].steps == 6
    for key in ("loss", "accuracy"):
        assert resumed.history[key][0] == pytest.approx(whole.history[key][0], rel=1e-5), key


def test_one_hot_labels_and_a_softmax_model_train_with_the_builtin_accuracy():
    """The classic MNIST MLP through the Trainer: one-hot labels, categorical_crossentropy."""
    from tfdist.data.sources import load_digits_arrays, numpy_source

    images, labels = load_digits_arrays()
    one_hot = keras.utils.to_categorical(labels, 10)
    source = numpy_source(images[:1500], one_hot[:1500], validation=(images[1500:], one_hot[1500:]))
    assert source.num_classes == 10
    distribution = make_strategy("mirrored")
    keras.utils.set_random_seed(0)
    with distribution.scope():
        model = keras.Sequential(
            [
                keras.Input((8, 8)),
                keras.layers.Flatten(),
                keras.layers.Dense(64, activation="relu"),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    train = make_dataset_fn(source, "train", global_batch_size=64, training=True)
    val = make_dataset_fn(source, "validation", global_batch_size=64, training=False)
    history = _fit(
        Trainer(distribution, model), train, epochs=10, steps_per_epoch=23, validation_fn=val
    )
    assert history.last("accuracy") > 0.9 and history.last("val_accuracy") > 0.8


def test_numpy_source_takes_float_and_multi_output_targets():
    from tfdist.data.sources import numpy_source

    features = np.random.default_rng(0).random((40, 3)).astype(np.float64)
    regression = numpy_source(features, features.sum(axis=1))
    assert regression.num_classes is None
    ((x, y),) = regression.split("train").records().take(1).as_numpy_iterator()
    assert y.dtype == np.float32
    both = numpy_source(features, {"sum": features.sum(axis=1), "label": np.arange(40) % 3})
    assert both.num_train == 40
