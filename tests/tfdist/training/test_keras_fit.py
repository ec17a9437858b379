"""tfdist.fit / evaluate / predict in this process: one_device and mirrored on two CPUs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdist
from tfdist.config import ConfigError
from tfdist.data.sources import load_digits_arrays

X, Y = load_digits_arrays()
ONE_HOT = keras.utils.to_categorical(Y, 10)


def _mlp(dist, *, loss="sparse_categorical_crossentropy", metrics=("accuracy",), seed=0):
    keras.utils.set_random_seed(seed)
    with dist.scope():
        model = keras.Sequential(
            [
                keras.Input((8, 8)),
                keras.layers.Flatten(),
                keras.layers.Dense(32, activation="relu"),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile(optimizer="adam", loss=loss, metrics=list(metrics))
    return model


@pytest.fixture(scope="module")
def dist():
    return tfdist.make_strategy("mirrored", cluster=None)


@pytest.mark.parametrize("kind", ["one_device", "mirrored"])
def test_fit_gives_keras_history_keys_and_learns(kind):
    dist = tfdist.make_strategy(kind, cluster=None)
    model = _mlp(dist, loss="categorical_crossentropy")
    history = tfdist.fit(
        model, X[:1500], ONE_HOT[:1500], batch_size=64, epochs=12, validation_split=0.2, verbose=0
    )
    assert isinstance(history, keras.callbacks.History) and model.history is history
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.epoch == list(range(12))
    assert history.history["val_accuracy"][-1] > 0.85
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.final_step == 12 * 19  # 1200 rows at 64: 18 full batches and a partial one.


def test_evaluate_counts_each_example_once_and_equals_keras(dist):
    model = _mlp(dist)
    tfdist.fit(model, X[:1500], Y[:1500], batch_size=64, epochs=2, verbose=0)
    x, y = X[:1001], Y[:1001]  # 1,001 = 15 batches of 64 and 41 more: no padding.
    logs = tfdist.evaluate(model, x, y, batch_size=64, return_dict=True)
    outputs = model(x, training=False).numpy()
    loss = keras.losses.sparse_categorical_crossentropy(y, outputs).numpy().mean()
    accuracy = np.mean(np.argmax(outputs, axis=1) == y)
    assert logs["loss"] == pytest.approx(loss, abs=1e-5)
    assert logs["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert tfdist.evaluate(model, x, y, batch_size=64) == pytest.approx([loss, accuracy], abs=1e-5)


def test_predict_returns_every_example_in_order(dist):
    model = _mlp(dist)
    predicted = tfdist.predict(model, X[:1001], batch_size=64)
    assert predicted.shape == (1001, 10)
    np.testing.assert_allclose(predicted, model(X[:1001], training=False).numpy(), atol=1e-5)


def test_sample_and_class_weights_and_validation_data(dist):
    model = _mlp(dist)
    weights = np.where(Y[:1500] == 3, 5.0, 1.0).astype(np.float32)
    history = tfdist.fit(
        model,
        X[:1500],
        Y[:1500],
        sample_weight=weights,
        batch_size=50,
        epochs=2,
        validation_data=(X[1500:], Y[1500:]),
        verbose=0,
    )
    assert "val_accuracy" in history.history
    history = tfdist.fit(
        model, X[:1500], Y[:1500], class_weight={3: 5.0}, batch_size=50, epochs=1, verbose=0
    )
    assert set(history.history) == {"loss", "accuracy"}
    with pytest.raises(ConfigError, match="class_weight and sample_weight were both given"):
        tfdist.fit(
            model,
            X[:100],
            Y[:100],
            class_weight={3: 5.0},
            sample_weight=weights[:100],
            batch_size=10,
            verbose=0,
        )


def test_batched_dataset_is_the_global_batch(dist):
    model = _mlp(dist)
    train = tf.data.Dataset.from_tensor_slices((X[:1500], Y[:1500])).batch(60)
    val = tf.data.Dataset.from_tensor_slices((X[1500:], Y[1500:])).batch(60)
    history = tfdist.fit(model, train, epochs=3, validation_data=val, verbose=0)
    assert history.final_step == 3 * 25
    assert history.history["val_accuracy"][-1] > 0.5
    with pytest.raises(ConfigError, match="is not batched; batch it with the global batch"):
        tfdist.fit(model, train.unbatch(), epochs=1, verbose=0)


def test_regression_and_two_outputs_with_loss_weights(dist):
    keras.utils.set_random_seed(0)
    with dist.scope():
        inputs = keras.Input((8, 8))
        hidden = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(inputs))
        digit = keras.layers.Dense(10, activation="softmax", name="digit")(hidden)
        ink = keras.layers.Dense(1, name="ink")(hidden)
        model = keras.Model(inputs, {"digit": digit, "ink": ink})
        model.compile(
            optimizer="adam",
            loss={"digit": "sparse_categorical_crossentropy", "ink": "mse"},
            loss_weights={"digit": 1.0, "ink": 0.5},
            metrics={"digit": ["accuracy"], "ink": ["mae"]},
        )
    targets = {"digit": Y[:1500], "ink": X[:1500].mean(axis=(1, 2))[:, None]}
    history = tfdist.fit(
        model, X[:1500], targets, batch_size=64, epochs=3, verbose=0, validation_split=0.1
    )
    reference = keras.Model(inputs, {"digit": digit, "ink": ink})  # Same names as Keras gives.
    assert {
        "loss",
        "digit_accuracy",
        "ink_mae",
        "val_loss",
        "val_digit_accuracy",
        "val_ink_mae",
    } <= set(history.history)
    del reference


def test_own_train_step_runs(dist):
    calls = []

    class Counting(keras.Model):
        def train_step(self, data):
            calls.append(1)  # Traced once.
            return super().train_step(data)

    keras.utils.set_random_seed(0)
    with dist.scope():
        inputs = keras.Input((8, 8))
        outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs))
        model = Counting(inputs, outputs)
        model.compile(
            optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
    history = tfdist.fit(model, X[:1500], Y[:1500], batch_size=32, epochs=10, verbose=0)
    assert calls and history.history["accuracy"][-1] > 0.8
    with pytest.raises(ConfigError, match="grad_accum_steps .* overrides train_step"):
        tfdist.fit(model, X[:640], Y[:640], batch_size=64, grad_accum_steps=2, verbose=0)


def test_callbacks_early_stopping_and_lr_schedule(dist):
    model = _mlp(dist)
    seen = []
    history = tfdist.fit(
        model,
        X[:1500],
        Y[:1500],
        batch_size=64,
        epochs=30,
        verbose=0,
        validation_split=0.2,
        callbacks=[
            keras.callbacks.EarlyStopping(monitor="loss", min_delta=10.0, patience=1),
            keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.01 / (epoch + 1)),
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: seen.append((epoch, dict(logs)))
            ),
        ],
    )
    assert len(history.epoch) == 2  # Stopped after patience 1 with no 10.0 improvement.
    assert [epoch for epoch, _ in seen] == [0, 1]
    assert seen[-1][1]["learning_rate"] == pytest.approx(0.005)
    assert float(tf.convert_to_tensor(model.optimizer.learning_rate)) == pytest.approx(0.005)


def test_model_dir_resumes_and_backup_and_restore_is_keras_own(dist, tmp_path):
    model = _mlp(dist)
    tfdist.fit(
        model,
        X[:1500],
        Y[:1500],
        batch_size=64,
        epochs=2,
        verbose=0,
        model_dir=str(tmp_path / "run"),
    )
    again = _mlp(dist, seed=1)
    history = tfdist.fit(
        again,
        X[:1500],
        Y[:1500],
        batch_size=64,
        epochs=3,
        verbose=0,
        model_dir=str(tmp_path / "run"),
    )
    # The History holds the whole run, the resumed epochs included (run_record).
    assert history.restored_from and history.epoch == [0, 1, 2]
    assert len(history.history["loss"]) == 3 and len(history.timings) == 1
    assert (tmp_path / "run" / "model.keras").exists()
    # Keras' BackupAndRestore is Keras' own: its directory, its files, deleted at the end.
    backup = tmp_path / "backup"
    tfdist.fit(
        _mlp(dist),
        X[:640],
        Y[:640],
        batch_size=64,
        epochs=2,
        verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(str(backup))],
    )
    assert not backup.exists() or not any(backup.iterdir())


def test_user_mistakes_are_one_line(dist):
    with dist.scope():
        raw = keras.Sequential(
            [keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10)]
        )
    with pytest.raises(ConfigError, match="is not compiled; call model.compile"):
        tfdist.fit(raw, X, Y)
    model = _mlp(dist)
    with pytest.raises(ConfigError, match=r"different numbers of rows \(x has 100, y has 99\)"):
        tfdist.fit(model, X[:100], Y[:99], verbose=0)
    # A batch_size beyond the data is one partial batch, as in Keras: not a mistake.
    assert tfdist.fit(model, X, Y, batch_size=4000, verbose=0).final_step == 1
    with pytest.raises(ConfigError, match=r"validation_split \(1.5\) must be in \[0, 1\)"):
        tfdist.fit(model, X, Y, validation_split=1.5, verbose=0)


def test_the_compiled_optimizer_is_the_one_that_trains(dist):
    keras.utils.set_random_seed(0)
    with dist.scope():
        model = keras.Sequential(
            [
                keras.Input((8, 8)),
                keras.layers.Flatten(),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=0.0),
            loss="sparse_categorical_crossentropy",
        )
    before = [w.numpy() for w in model.trainable_weights]
    tfdist.fit(model, X[:640], Y[:640], batch_size=64, epochs=1, verbose=0)
    for old, new in zip(before, model.trainable_weights, strict=False):
        np.testing.assert_array_equal(old, new.numpy())  # Learning rate 0: nothing moves.
    tfdist.fit(
        model,
        X[:640],
        Y[:640],
        batch_size=64,
        epochs=1,
        verbose=0,
        callbacks=[keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.5)],
    )
    assert not np.array_equal(before[0], model.trainable_weights[0].numpy())


def test_a_model_built_outside_any_scope_trains_on_one_device():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = tfdist.fit(model, X[:640], Y[:640], batch_size=64, epochs=2, verbose=0)
    assert len(history.history["accuracy"]) == 2
    assert tfdist.predict(model, X[:10], batch_size=4).shape == (10, 10)


class _Batches(keras.callbacks.Callback):
    """Keeps the logs of every training batch's end."""

    def __init__(self):
        super().__init__()
        self.logs = []

    def on_train_batch_end(self, batch, logs=None):
        self.logs.append(dict(logs or {}))


@pytest.mark.parametrize("kind", ["one_device", "mirrored"])
def test_every_batch_end_gets_the_epochs_metrics_so_far(kind):
    """The compiled call returns its logs: the last call's are the epoch's."""
    dist = tfdist.make_strategy(kind, cluster=None)
    model = _mlp(dist)
    batches = _Batches()
    history = tfdist.fit(
        model,
        X[:1280],
        Y[:1280],
        batch_size=64,
        epochs=2,
        verbose=0,
        steps_per_loop=5,
        callbacks=[batches],
    )
    assert len(batches.logs) == 2 * (20 // 5)
    assert all(set(logs) == {"loss", "accuracy"} for logs in batches.logs)
    for epoch in range(2):
        last = batches.logs[4 * epoch + 3]
        assert last["accuracy"] == pytest.approx(history.history["accuracy"][epoch], rel=1e-6)
        assert last["loss"] == pytest.approx(history.history["loss"][epoch], rel=1e-6)
