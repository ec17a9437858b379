"""Every argument `tfdist.fit` takes changes what the loop does: none is silently ignored.

Each case runs `tfdist.fit` with one argument changed from a baseline and asserts on what
the change must do (steps, hooks, files, weights, logs). `test_every_argument_is_covered`
fails when `fit` gains an argument this file does not exercise. `shard_policy` needs
several workers to mean anything; it is covered under multi_worker by
`tests/e2e/test_one_path_e2e.py` (here only its refusal for a generator).
"""

from __future__ import annotations

import inspect
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdist
from tfdist.config import CommunicationConfig, ConfigError
from tfdist.data.sources import load_digits_arrays

X, Y = load_digits_arrays()
X, Y = X[:640].astype(np.float32), Y[:640]
COVERED_ELSEWHERE = {"shard_policy": "tests/e2e/test_one_path_e2e.py"}


@pytest.fixture(scope="module")
def dist():
    return tfdist.make_strategy("mirrored", cluster=None)


def _model(dist, optimizer=None, seed=0):
    keras.utils.set_random_seed(seed)
    with dist.scope():
        model = keras.Sequential(
            [
                keras.Input((8, 8)),
                keras.layers.Flatten(),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile(
            optimizer=optimizer or keras.optimizers.SGD(0.1),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    return model


def _fit(dist, optimizer=None, **kwargs):
    model = _model(dist, optimizer)
    kwargs.setdefault("batch_size", 64)
    kwargs.setdefault("verbose", 0)
    kwargs.setdefault("shuffle", False)
    history = tfdist.fit(model, X, Y, **kwargs)
    return model, history


def _weights(model):
    return np.concatenate([np.ravel(w) for w in model.get_weights()])


def _differs(a, b):
    return not np.allclose(_weights(a), _weights(b), atol=0, rtol=0)


class _Count(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = []

    def on_train_batch_begin(self, batch, logs=None):
        self.batches.append(batch)


@pytest.fixture(scope="module")
def baseline(dist):
    return _fit(dist)


def test_batch_size(dist, baseline):
    _, history = _fit(dist, batch_size=32)
    assert history.final_step == 640 // 32 and baseline[1].final_step == 640 // 64


def test_epochs(dist):
    _, history = _fit(dist, epochs=3)
    assert history.epoch == [0, 1, 2]


def test_verbose(dist, capsys):
    _fit(dist, verbose=2)
    assert "10/10" in capsys.readouterr().out
    _fit(dist, verbose=0)
    assert capsys.readouterr().out == ""


def test_callbacks(dist):
    count = _Count()
    _fit(dist, callbacks=[count])
    # steps_per_loop follows compile(steps_per_execution=1), as Keras' batch hooks do.
    assert count.batches == list(range(10))


def test_validation_split(dist, baseline):
    _, history = _fit(dist, validation_split=0.25)
    assert "val_loss" in history.history and "val_loss" not in baseline[1].history
    assert history.final_step == 8  # 480 rows at 64: 7 full batches and Keras' partial one.


def test_validation_data(dist):
    _, history = _fit(dist, validation_data=(X[:100], Y[:100]))
    assert "val_accuracy" in history.history


def test_shuffle(dist, baseline):
    model, _ = _fit(dist, shuffle=True)
    assert _differs(model, baseline[0])


def test_class_weight(dist, baseline):
    model, _ = _fit(dist, class_weight={3: 5.0})
    assert _differs(model, baseline[0])


def test_sample_weight(dist, baseline):
    model, _ = _fit(dist, sample_weight=np.where(Y == 3, 5.0, 1.0).astype(np.float32))
    assert _differs(model, baseline[0])


def test_initial_epoch(dist):
    _, history = _fit(dist, epochs=3, initial_epoch=1)
    assert history.epoch == [1, 2]


def test_steps_per_epoch(dist):
    _, history = _fit(dist, steps_per_epoch=4)
    assert history.final_step == 4


def test_validation_steps(dist):
    val = tf.data.Dataset.from_tensor_slices((X[:256], Y[:256])).batch(64)
    model, whole = _fit(dist, validation_data=val)
    _, capped = _fit(dist, validation_data=val, validation_steps=1)
    first = tfdist.evaluate(model, X[:64], Y[:64], batch_size=64, return_dict=True)
    assert capped.history["val_loss"][0] == pytest.approx(first["loss"], rel=1e-5)
    assert whole.history["val_loss"][0] != pytest.approx(first["loss"], rel=1e-5)


def test_validation_batch_size(dist):
    counts = {}

    class _CountTests(keras.callbacks.Callback):
        def on_test_batch_begin(self, batch, logs=None):
            counts[batch_size] = counts.get(batch_size, 0) + 1

    for batch_size in (None, 10):
        _fit(
            dist,
            validation_data=(X[:100], Y[:100]),
            validation_batch_size=batch_size,
            callbacks=[_CountTests()],
        )
    assert counts == {None: 2, 10: 10}  # batch_size (64) by default, as Keras.


def test_shard_policy_other_than_dealt_batches_needs_a_source_it_can_split(dist):
    def batches():
        while True:
            yield X[:64], Y[:64]

    with pytest.raises(ConfigError, match=r"shard_policy \('hash'\) splits the data layer"):
        tfdist.fit(_model(dist), batches(), steps_per_epoch=2, shard_policy="hash", verbose=0)


def test_validation_freq(dist):
    _, history = _fit(dist, epochs=2, validation_data=(X[:64], Y[:64]), validation_freq=2)
    assert len(history.history["val_loss"]) == 1 and len(history.history["loss"]) == 2


def test_distribution(dist):
    other = tfdist.make_strategy("one_device", cluster=None)
    model = _model(dist)
    with pytest.raises(ConfigError, match="was built under another strategy"):
        tfdist.fit(model, X, Y, verbose=0, distribution=other)
    history = tfdist.fit(model, X, Y, batch_size=64, verbose=0, distribution=dist)
    assert history.final_step == 10


def test_model_dir(dist, tmp_path):
    _fit(dist, model_dir=str(tmp_path))
    assert (tmp_path / "model.keras").exists()
    assert sorted(os.listdir(tmp_path / "checkpoints"))[0].startswith("checkpoint")


def _checkpoints(directory):
    return sorted(
        int(name.split("-")[1].split(".")[0])
        for name in os.listdir(directory / "checkpoints")
        if name.startswith("ckpt-") and name.endswith(".index")
    )


def test_checkpoint_every_steps(dist, tmp_path):
    _fit(dist, model_dir=str(tmp_path / "a"), keep_checkpoints=10)
    _fit(dist, model_dir=str(tmp_path / "b"), keep_checkpoints=10, checkpoint_every_steps=4)
    assert _checkpoints(tmp_path / "a") == [10]
    assert _checkpoints(tmp_path / "b") == [4, 8, 10]
    with pytest.raises(ConfigError, match=r"checkpoint_every_steps \(4\) needs somewhere"):
        _fit(dist, checkpoint_every_steps=4)


def test_keep_checkpoints(dist, tmp_path):
    _fit(dist, model_dir=str(tmp_path), checkpoint_every_steps=2, keep_checkpoints=2)
    assert _checkpoints(tmp_path) == [8, 10]


def test_steps_per_loop(dist):
    count = _Count()
    _fit(dist, steps_per_loop=3, callbacks=[count])
    assert count.batches == [0, 3, 6, 9]


def test_grad_accum_steps(dist):
    """Two micro-batches of 32 in one update equal one step on the batch of 64."""
    accumulated, history = _fit(dist, batch_size=32, grad_accum_steps=2, steps_per_epoch=1)
    whole, _ = _fit(dist, batch_size=64, steps_per_epoch=1)
    plain, _ = _fit(dist, batch_size=32, steps_per_epoch=1)
    np.testing.assert_allclose(_weights(accumulated), _weights(whole), atol=1e-6)
    assert _differs(accumulated, plain) and history.final_step == 1


def test_communication(dist, baseline):
    compressed, _ = _fit(dist, communication=CommunicationConfig(grad_compression="fp16"))
    assert _differs(compressed, baseline[0])  # Gradients rounded to float16 on the wire.
    np.testing.assert_allclose(_weights(compressed), _weights(baseline[0]), atol=1e-3)
    trainer = compressed._tfdist_trainer[1]
    assert (
        trainer.allreduce_bytes_per_step
        == baseline[0]._tfdist_trainer[1].allreduce_bytes_per_step // 2
    )


def test_seed(dist):
    first, _ = _fit(dist, shuffle=True, seed=0)
    second, _ = _fit(dist, shuffle=True, seed=1)
    again, _ = _fit(dist, shuffle=True, seed=0)
    assert _differs(first, second) and not _differs(first, again)


def test_sync_every(dist, baseline):
    local, _ = _fit(dist, sync_every=4)
    assert _differs(local, baseline[0])  # tests/tfdist/training/test_one_path.py: how.


@pytest.mark.parametrize(
    "outer",
    [
        {"outer_optimizer": "sgd"},
        {"outer_optimizer": "nesterov"},
        {"outer_optimizer": "sgd", "outer_learning_rate": 0.3},
        {"outer_optimizer": "sgd", "outer_momentum": 0.5},
    ],
)
def test_outer_optimizer_and_its_settings(dist, outer):
    plain, _ = _fit(dist, sync_every=4)
    changed, _ = _fit(dist, sync_every=4, **outer)
    assert _differs(changed, plain)
    if len(outer) > 1:
        default, _ = _fit(dist, sync_every=4, outer_optimizer="sgd")
        assert _differs(changed, default)


def test_every_argument_is_covered():
    tested = {name[len("test_") :] for name in globals() if name.startswith("test_")} | {
        "outer_learning_rate",
        "outer_momentum",
        "outer_optimizer",
        "x",
        "y",
        "model",
    }
    arguments = set(inspect.signature(tfdist.fit).parameters)
    assert arguments - tested - set(COVERED_ELSEWHERE) == set()
