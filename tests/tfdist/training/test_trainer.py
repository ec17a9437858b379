"""The training loop in this process: one_device and mirrored over two logical CPUs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdist.config import ConfigError
from tfdist.data.pipeline import load_source, make_dataset_fn, steps_per_epoch
from tfdist.models import build_model
from tfdist.distribute.strategies import make_strategy
from tfdist.training.trainer import Trainer

DIGITS = load_source("digits")


def _digits_fns(batch=64, shuffle=True):
    train = make_dataset_fn(DIGITS, "train", global_batch_size=batch, training=True,
                            shuffle=shuffle)
    val = make_dataset_fn(DIGITS, "validation", global_batch_size=batch, training=False)
    return train, val


def _trainer(kind, *, batch=64, optimizer="adam", **kwargs):
    distribution = make_strategy(kind)
    keras.utils.set_random_seed(0)
    with distribution.strategy.scope():
        model = build_model("mlp", input_shape=DIGITS.input_shape, num_classes=10)
    return Trainer(distribution, model=model, optimizer=optimizer, global_batch_size=batch,
                   **kwargs)


@pytest.mark.parametrize("kind", ["one_device", "mirrored"])
def test_digits_reach_accuracy(kind):
    trainer = _trainer(kind, steps_per_loop=8)
    train, val = _digits_fns()
    history = trainer.fit(train, epochs=15, steps_per_epoch=steps_per_epoch(DIGITS, 64),
                          validation_fn=val)
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
    history = resumed.fit(train, epochs=4, steps_per_epoch=5, validation_fn=val,
                          model_dir=str(tmp_path))
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
        other = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(),
                                  keras.layers.Dense(7), keras.layers.Dense(10)])
    trainer = Trainer(distribution, model=other, global_batch_size=64)
    with pytest.raises(ConfigError, match=r"does not fit this model.*another --model_dir"):
        trainer.fit(train, epochs=2, steps_per_epoch=2, model_dir=str(tmp_path))


def test_global_batch_must_divide_over_replicas():
    with pytest.raises(ConfigError, match=r"global_batch_size \(33\) must be divisible by the "
                                          r"number of replicas \(2\); use 32 or 34"):
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
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-5)
