"""The trainer's hooks: callbacks see every loop and epoch; Keras metrics run in the step."""

import keras
import pytest
import tensorflow as tf

from tfdist.config import ConfigError
from tfdist.data.pipeline import load_source, make_dataset_fn
from tfdist.distribute.strategies import Distribution, TaskRole, make_strategy
from tfdist.models import build_model
from tfdist.training.callbacks import Callback
from tfdist.training.trainer import Trainer

DIGITS = load_source("digits")


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_fit_begin(self, **kwargs):
        self.calls.append(("fit_begin", kwargs))

    def on_loop_begin(self, step, num_steps):
        self.calls.append(("loop_begin", step, num_steps))

    def on_loop_end(self, loop):
        self.calls.append(("loop_end", loop))

    def on_epoch_end(self, log):
        self.calls.append(("epoch_end", log))

    def on_fit_end(self, history):
        self.calls.append(("fit_end", history))

    def of(self, kind):
        return [call[1:] if len(call) > 2 else call[1] for call in self.calls if call[0] == kind]


def _fit(kind, *, metrics_fn=lambda: (), callbacks=(), epochs=2, steps=5, steps_per_loop=2):
    distribution = make_strategy(kind)
    keras.utils.set_random_seed(0)
    with distribution.strategy.scope():
        model = build_model("mlp", input_shape=DIGITS.input_shape, num_classes=10)
        metrics = metrics_fn()
    trainer = Trainer(
        distribution,
        model=model,
        global_batch_size=64,
        steps_per_loop=steps_per_loop,
        metrics=metrics,
        callbacks=callbacks,
    )
    train = make_dataset_fn(DIGITS, "train", global_batch_size=64, training=True)
    val = make_dataset_fn(DIGITS, "validation", global_batch_size=64, training=False)
    return trainer.fit(train, epochs=epochs, steps_per_epoch=steps, validation_fn=val)


def test_callbacks_see_each_loop_and_epoch_in_order():
    recorder = Recorder()
    history = _fit("mirrored", callbacks=[recorder])
    assert recorder.of("fit_begin") == [
        dict(epochs=2, steps_per_epoch=5, initial_epoch=0, initial_step=0)
    ]
    assert recorder.of("loop_begin") == [(0, 2), (2, 2), (4, 1), (5, 2), (7, 2), (9, 1)]
    loops = recorder.of("loop_end")
    assert [(loop.epoch, loop.step, loop.epoch_steps) for loop in loops] == [
        (1, 2, 2),
        (1, 4, 4),
        (1, 5, 5),
        (2, 7, 2),
        (2, 9, 4),
        (2, 10, 5),
    ]
    assert [loop.examples for loop in loops] == [128, 128, 64] * 2
    assert all(loop.seconds > 0 and loop.loss > 0 and loop.steps_per_epoch == 5 for loop in loops)
    epochs = recorder.of("epoch_end")
    assert epochs == history.epochs and recorder.of("fit_end") == [history]
    assert [e.global_step for e in epochs] == [5, 10]
    assert 0 < epochs[0].wall_seconds < epochs[1].wall_seconds
    assert epochs[0].learning_rate == pytest.approx(1e-3)
    # The last loop's running loss is the epoch's loss.
    assert loops[2].loss == pytest.approx(epochs[0].train_loss)


def test_keras_metrics_are_updated_in_the_replica_step_on_two_replicas():
    history = _fit(
        "mirrored",
        metrics_fn=lambda: [
            keras.metrics.SparseCategoricalAccuracy(name="keras_accuracy"),
            keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3"),
        ],
    )
    for epoch in history.epochs:
        # Summed over both replicas and reset each epoch: equals the trainer's own count.
        assert epoch.metrics["keras_accuracy"] == pytest.approx(epoch.train_accuracy, abs=1e-6)
        assert epoch.train_accuracy <= epoch.metrics["top3"] <= 1
    assert history.as_dicts()[0]["metrics"].keys() == {"keras_accuracy", "top3"}


def test_metrics_are_refused_under_parameter_server():
    distribution = Distribution(
        kind="parameter_server",
        strategy=tf.distribute.get_strategy(),
        coordinator=object(),
        role=TaskRole("chief", 0, True),
        num_workers=2,
    )
    model = build_model("mlp", input_shape=DIGITS.input_shape, num_classes=10)
    with pytest.raises(
        ConfigError,
        match=r"metrics \(\['acc'\]\) are updated in the replica "
        r"step of sync strategies only",
    ):
        Trainer(
            distribution,
            model=model,
            global_batch_size=64,
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
        )
