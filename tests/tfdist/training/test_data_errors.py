"""Issue 23's data mistakes, in this process: Keras' own fit fails on each (the oracle), and
tfdist.fit/evaluate/predict end with one line naming the data, the value and the fix
under one_device and mirrored. multi_worker and parameter_server:
tests/e2e/test_data_errors_e2e.py."""

import math

import keras
import numpy as np
import pytest
from data_error_cases import BY_NAME, CASES, build, features, keras_call, labels, matches, run

import tfdist
from tfdist.config import ConfigError
from tfdist.training.history import TrainingDiverged

NAN = BY_NAME["nan_inputs_with_a_finite_loss"]


@pytest.fixture(scope="module")
def strategies():
    return {kind: tfdist.make_strategy(kind, cluster=None) for kind in ("one_device", "mirrored")}


@pytest.mark.parametrize("case", [c for c in CASES if c is not NAN], ids=lambda c: c.name)
def test_keras_own_call_raises_on_the_case(case):
    with pytest.raises(Exception) as raised:
        keras_call(case)
    assert not isinstance(raised.value, ConfigError)
    print(f"{case.name}: Keras raises {type(raised.value).__name__}")


def test_keras_own_fit_trains_nan_weights_with_a_finite_loss_on_nan_inputs():
    model, history = keras_call(NAN)
    assert all(math.isfinite(loss) for loss in history.history["loss"]), history.history
    assert not all(np.isfinite(w).all() for w in model.get_weights())


@pytest.mark.parametrize("kind", ["one_device", "mirrored"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_tfdist_ends_each_case_with_one_line(strategies, kind, case):
    with pytest.raises(ConfigError) as raised:
        run(case, strategies[kind])
    message = str(raised.value)
    assert "\n" not in message
    assert matches(case, message), message


def test_weights_that_turn_nan_without_data_nan_stop_as_diverged(strategies):
    model = build(strategies["mirrored"])
    x, y = features(), labels()

    class Poison(keras.callbacks.Callback):  # Stands for any cause outside the data.
        def on_train_batch_end(self, batch, logs=None):
            self.model.layers[-1].bias.assign([np.nan] * 3)

    with pytest.raises(TrainingDiverged) as raised:
        tfdist.fit(model, x, y, batch_size=16, verbose=0, steps_per_loop=1, callbacks=[Poison()])
    assert str(raised.value).startswith(
        "the model's weights became NaN/inf by step 1 (epoch 1) while the loss stayed finite; "
        "no checkpoint kept."
    )


def test_an_optimizer_state_that_turns_nan_stops_before_any_checkpoint_holds_it(
    strategies, tmp_path
):
    """Finite weights with NaN slots would diverge again at their first step: no checkpoint
    of them is written, and the newest one stays the last finite one."""
    with strategies["one_device"].scope():
        model = build(strategies["one_device"])
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=model.loss)
    x, y = features(), labels()

    class PoisonSlots(keras.callbacks.Callback):  # After a step: the weights stay finite.
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1:  # After the first epoch's checkpoint.
                for slot in self.model.optimizer.variables:
                    if slot.dtype == "float32" and len(slot.shape) == 2:
                        slot.assign(np.full(slot.shape, np.nan, np.float32))

    with pytest.raises(TrainingDiverged) as raised:
        tfdist.fit(
            model,
            x,
            y,
            batch_size=16,
            epochs=3,
            verbose=0,
            steps_per_loop=1,
            callbacks=[PoisonSlots()],
            model_dir=str(tmp_path),
        )
    message = str(raised.value)
    assert message.startswith("the optimizer's state became NaN/inf by step ")
    newest = tmp_path / "checkpoints"
    assert message.split("the last good checkpoint is ")[1].startswith(str(newest / "ckpt-"))
    kept = sorted(int(p.name[5:-6]) for p in newest.glob("ckpt-*.index"))
    assert kept and f"ckpt-{kept[-1]}." in message


def test_right_data_of_every_shape_keras_accepts_still_trains(strategies):
    dist = strategies["one_device"]
    x, y = features(), labels()
    fits = [
        ("sparse_categorical_crossentropy", y[:, None]),  # A label column.
        ("sparse_categorical_crossentropy", y.astype("float32")),
        ("categorical_crossentropy", keras.utils.to_categorical(y, 3)),
        ("mse", y[:, None].astype("float32")),  # Broadcasts over the 3 outputs.
        (keras.losses.SparseCategoricalCrossentropy(ignore_class=-1), np.where(y == 0, -1, y)),
    ]
    for loss, targets in fits:
        model = build(dist, loss)
        tfdist.fit(model, x, targets, batch_size=16, verbose=0)
        tfdist.evaluate(model, x, targets, batch_size=16)
    tfdist.predict(model, x[:, :, None], batch_size=16)  # A last axis of 1 is squeezed.
