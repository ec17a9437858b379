"""Local SGD and the DiLoCo outer step under mirrored over two logical CPUs."""

import itertools
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf
from compiled_models import digits_mlp

from tfdist.config import CheckpointConfig, ConfigError, JobConfig, LocalSGDConfig, LoopConfig
from tfdist.data.epochs import calls
from tfdist.data.pipeline import load_source, make_dataset_fn
from tfdist.distribute.strategies import make_strategy
from tfdist.models import build_model
from tfdist.training.preemption import Preempted
from tfdist.training.schedule import cut_at, segments_ending
from tfdist.training.trainer import Trainer

DIGITS = load_source("digits")
BATCH = 64
_KEY_BASES = itertools.count(1)


@pytest.fixture(autouse=True)
def own_collective_keys(monkeypatch):
    """Restores the collective key base ``_strategy`` moves."""
    monkeypatch.setattr(tf.distribute.MirroredStrategy, "_collective_key_base", 0)


def _strategy(kind):
    """``make_strategy(kind)`` with collective keys no other strategy of this process uses.

    Strategies made in one process number their collectives alike; two that all-reduce
    different shapes under the same key fail ("Shape mismatch in the collective
    instance"). TensorFlow's own tests set ``_collective_key_base`` for this.
    """
    tf.distribute.MirroredStrategy._collective_key_base = 10_000 * next(_KEY_BASES)
    return make_strategy(kind)


class _Trainer(Trainer):
    """A Trainer whose fit defaults to this file's global batch."""

    def fit(self, train_fn, **kwargs):
        kwargs.setdefault("global_batch_size", BATCH)
        return super().fit(train_fn, **kwargs)

    def train_calls(self, iterator, steps):
        """Runs compiled calls of the runner directly (one call of `steps` steps)."""
        return self.runner_for(_train_fn())._train_call(iterator, tf.constant(steps), False)


def _trainer(
    kind="mirrored",
    *,
    optimizer="adam",
    learning_rate=1e-3,
    steps_per_loop=8,
    model_dir=None,
    checkpoint_every_steps=None,
    **local,
):
    distribution = _strategy(kind)
    model = digits_mlp(distribution, optimizer=optimizer, learning_rate=learning_rate)
    loop = LoopConfig(
        steps_per_loop=steps_per_loop,
        local_sgd=LocalSGDConfig(**local),
        checkpoint=CheckpointConfig(
            model_dir=model_dir, checkpoint_every_steps=checkpoint_every_steps
        ),
    )
    return _Trainer(distribution, model, loop)


def _train_fn(shuffle=False):
    return make_dataset_fn(DIGITS, "train", global_batch_size=BATCH, training=True, shuffle=shuffle)


def _weights(trainer):
    return [w.numpy() for w in trainer.model.trainable_variables]


def _components(variable):
    return [c.numpy() for c in variable.value.values]


def _local_sgd_reference(num_syncs, sync_every, learning_rate):
    """Plain TensorFlow: two model copies, each SGD on its own batches, averaged every H."""
    keras.utils.set_random_seed(0)
    model = build_model("mlp", input_shape=DIGITS.input_shape, num_classes=10)
    weights = [w.numpy() for w in model.trainable_variables]
    context = tf.distribute.InputContext(
        num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=2
    )
    batches = iter(_train_fn()(context))  # Element 2k goes to replica 0, 2k+1 to replica 1.
    for _ in range(num_syncs):
        replicas = [[w.copy() for w in weights] for _ in range(2)]
        for _ in range(sync_every):
            for replica in replicas:
                features, labels = next(batches)
                for variable, value in zip(model.trainable_variables, replica, strict=False):
                    variable.assign(value)
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(
                        keras.losses.sparse_categorical_crossentropy(
                            labels, model(features), from_logits=True
                        )
                    )
                grads = tape.gradient(loss, model.trainable_variables)
                for i, g in enumerate(grads):
                    replica[i] = replica[i] - learning_rate * g.numpy()
        weights = [(a + b) / 2 for a, b in zip(*replicas, strict=False)]
    return weights


def test_sync_every_1_is_synchronous_training_bit_for_bit():
    plain, explicit = _trainer(), _trainer(sync_every=1)
    assert not hasattr(explicit.runner_for(_train_fn()), "averaging")
    for trainer in (plain, explicit):
        trainer.fit(_train_fn(shuffle=True), epochs=2, steps_per_epoch=23)
    for a, b in zip(_weights(plain), _weights(explicit), strict=False):
        np.testing.assert_array_equal(a, b)


def test_each_replica_steps_alone_then_the_weights_are_averaged():
    trainer = _trainer(optimizer="sgd", learning_rate=0.1, sync_every=3)
    trainer.fit(_train_fn(), epochs=1, steps_per_epoch=6)
    reference = _local_sgd_reference(num_syncs=2, sync_every=3, learning_rate=0.1)
    synchronous = _trainer(optimizer="sgd", learning_rate=0.1)
    synchronous.fit(_train_fn(), epochs=1, steps_per_epoch=6)
    for ours, theirs, _sync in zip(
        _weights(trainer), reference, _weights(synchronous), strict=False
    ):
        np.testing.assert_allclose(ours, theirs, atol=2e-6, rtol=0)
    assert (
        max(np.abs(a - b).max() for a, b in zip(reference, _weights(synchronous), strict=False))
        > 1e-4
    )
    for variable in trainer.model.trainable_variables:  # Replicas leave a sync identical.
        first, second = _components(variable)
        np.testing.assert_array_equal(first, second)


def test_replicas_drift_apart_between_synchronisations():
    trainer = _trainer(optimizer="sgd", learning_rate=0.1, sync_every=4)
    train = iter(trainer.distribution.strategy.distribute_datasets_from_function(_train_fn()))
    trainer.train_calls(train, 3)  # Three local steps, no sync yet.
    first, second = _components(trainer.model.trainable_variables[0])
    assert np.abs(first - second).max() > 1e-4
    trainer.train_calls(train, 1)  # A second call reaches step 4: a sync.
    first, second = _components(trainer.model.trainable_variables[0])
    np.testing.assert_array_equal(first, second)
    trainer.train_calls(train, 2)
    trainer.runner_for(_train_fn()).averaging.sync()  # What the runner does at epoch ends.
    for variable in trainer.model.trainable_variables + trainer.model.optimizer.variables:
        first, second = _components(variable)
        np.testing.assert_array_equal(first, second)


def test_slots_stay_local_between_syncs_and_are_averaged_when_the_run_settles():
    trainer = _trainer(sync_every=2)  # Adam: two slots per weight.
    train = iter(trainer.distribution.strategy.distribute_datasets_from_function(_train_fn()))
    trainer.train_calls(train, 4)  # Syncs the weights at steps 2 and 4.
    optimizer = trainer.model.optimizer
    kernel, momentum = trainer.model.trainable_variables[0], optimizer.variables[2]
    np.testing.assert_array_equal(*_components(kernel))
    assert np.abs(np.subtract(*_components(momentum))).max() > 1e-6
    runner = trainer.runner_for(_train_fn())
    runner.after_segment(4, settle=False)  # A segment's end the run goes on from: no change.
    assert np.abs(np.subtract(*_components(momentum))).max() > 1e-6
    before = _components(momentum)
    runner.after_segment(4, settle=False, snapshot=True)  # A preemption stop: kept, not averaged.
    for kept, was in zip(_components(momentum), before, strict=True):
        np.testing.assert_array_equal(kept, was)
    runner.after_segment(4, settle=True)  # Before a checkpoint, a stop or an epoch's end.
    for variable in optimizer.variables:
        np.testing.assert_array_equal(*_components(variable))


@pytest.mark.parametrize("outer, factor", [("nesterov", 0.7 * 1.9), ("sgd", 0.7)])
def test_outer_step_moves_the_anchor_along_the_averaged_change(outer, factor):
    """One sync: new = anchor - lr * update; update = g (+ mu g, Nesterov); g = anchor - mean."""
    start = _weights(_trainer(optimizer="sgd", learning_rate=0.1))
    diloco = _trainer(optimizer="sgd", learning_rate=0.1, sync_every=3, outer_optimizer=outer)
    diloco.fit(_train_fn(), epochs=1, steps_per_epoch=3)
    average = _local_sgd_reference(num_syncs=1, sync_every=3, learning_rate=0.1)
    for ours, anchor, mean in zip(_weights(diloco), start, average, strict=False):
        np.testing.assert_allclose(ours, anchor - factor * (anchor - mean), atol=2e-6, rtol=0)


def test_outer_sgd_with_rate_1_and_no_momentum_is_plain_averaging():
    averaging = _trainer(sync_every=4)
    outer = _trainer(
        sync_every=4, outer_optimizer="sgd", outer_learning_rate=1.0, outer_momentum=0.0
    )
    for trainer in (averaging, outer):
        trainer.fit(_train_fn(shuffle=True), epochs=2, steps_per_epoch=23)
    for a, b in zip(_weights(averaging), _weights(outer), strict=False):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_local_sgd_and_diloco_learn_digits():
    validation = make_dataset_fn(DIGITS, "validation", global_batch_size=BATCH, training=False)
    for kwargs in ({"sync_every": 8}, {"sync_every": 32, "outer_optimizer": "nesterov"}):
        trainer = _trainer(**kwargs)
        history = trainer.fit(
            _train_fn(shuffle=True), epochs=12, steps_per_epoch=23, validation_fn=validation
        )
        assert history.last("val_accuracy") >= 0.93, kwargs


class _SigtermAt(keras.callbacks.Callback):
    """Sends this process SIGTERM once, when a loop call ends at or after global ``step``."""

    def __init__(self, step, steps_per_epoch):
        super().__init__()
        self.at, self.per_epoch, self.epoch, self.done = step, steps_per_epoch, 0, False

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch * self.per_epoch + batch + 1 >= self.at and not self.done:
            self.done = True
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("checkpoint_every", [8, None], ids=["at_a_checkpoint", "between"])
def test_preemption_saves_at_a_sync_point_and_resume_is_exact(tmp_path, checkpoint_every):
    """Step 32 is a checkpoint step (every 8), where both runs average the slots; or not
    (epoch-end checkpoints only), where the uninterrupted run keeps each replica's slots
    and the preempted one must save them all as they are."""
    settings = dict(sync_every=4, outer_optimizer="nesterov", steps_per_loop=3)
    reference = _trainer(
        **settings, model_dir=str(tmp_path / "whole"), checkpoint_every_steps=checkpoint_every
    )
    reference.fit(_train_fn(shuffle=True), epochs=2, steps_per_epoch=23)
    saved = dict(
        settings, model_dir=str(tmp_path / "stopped"), checkpoint_every_steps=checkpoint_every
    )
    stopped = _trainer(**saved)
    with pytest.raises(Preempted) as preempted:
        stopped.fit(
            _train_fn(shuffle=True), epochs=2, steps_per_epoch=23, callbacks=[_SigtermAt(29, 23)]
        )
    # In epoch 2 calls end at 24, 27, 28, 31, 32; the SIGTERM after the call that ends at 31
    # (inside a segment) stops the run at 32, the next sync point.
    assert preempted.value.step == 32
    resumed = _trainer(**saved)
    history = resumed.fit(_train_fn(shuffle=True), epochs=2, steps_per_epoch=23)
    assert history.restored_from.endswith("ckpt-32") and history.final_step == 46
    for a, b in zip(_weights(reference), _weights(resumed), strict=False):
        np.testing.assert_array_equal(a, b)


def _segment_steps(length, steps_per_execution, sync_every, checkpoint_every=None, first=0):
    """The steps of each call, grouped into the segments local SGD runs an epoch in."""
    planned = cut_at(calls(first, length, steps_per_execution), 0, checkpoint_every)
    sync = lambda step: step % sync_every == 0  # noqa: E731
    return [[call.steps for call in segment] for segment in segments_ending(planned, 0, sync)]


def test_segments_end_at_sync_points():
    # A segment ends after a call that ends at a multiple of H, and at the epoch's end.
    assert _segment_steps(23, 32, 8) == [[23]]
    assert _segment_steps(40, 16, 8) == [[16], [16], [8]]
    # H beyond steps_per_execution: calls grouped until the sync point.
    assert _segment_steps(70, 10, 32) == [[10, 10, 10, 10, 10, 10, 10]]
    assert _segment_steps(64, 16, 32) == [[16, 16], [16, 16]]
    # Checkpoints cut calls; H=1 ends a segment after every call.
    assert _segment_steps(20, 32, 4, checkpoint_every=8) == [[8], [8], [4]]
    assert _segment_steps(10, 4, 1) == [[4], [4], [2]]
    # A resumed epoch's first call ends at Keras' next call boundary.
    assert _segment_steps(20, 8, 4, first=6) == [[2], [8], [4]]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sync_every": 0}, r"sync_every \(0\) must be a whole number of steps of at least 1"),
        ({"outer_optimizer": "adam"}, r"Unknown outer_optimizer 'adam'.*none, sgd, nesterov"),
        ({"outer_momentum": 1.0}, r"outer_momentum \(1.0\) must be at least 0 and below 1"),
    ],
)
def test_local_sgd_settings_are_checked(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LocalSGDConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {
                "strategy": "parameter_server",
                "num_ps": 1,
                "sync_every": 8,
                "mixed_precision": "mixed_float16",
            },
            r"sync_every \(8\).*loss-scaled.*mixed_bfloat16",
        ),
        (
            {"sync_every": 8, "checkpoint_every_steps": 20, "model_dir": "m"},
            r"checkpoint_every_steps \(20\) must be a multiple of sync_every \(8\).*16 or 24",
        ),
        ({"sync_every": 8, "grad_compression": "fp16"}, r"grad_compression \('fp16'\).*drop"),
        ({"sync_every": 8, "mixed_precision": "mixed_float16"}, r"mixed_float16.*mixed_bfloat16"),
    ],
)
def test_job_config_rejects_what_local_sgd_cannot_do(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        JobConfig.from_flat(**kwargs)


def test_trainer_rejects_loss_scaling_and_checkpoints_off_sync_points(tmp_path):
    distribution = _strategy("mirrored")
    with distribution.scope():
        model = build_model("mlp", input_shape=DIGITS.input_shape, num_classes=10)
        model.compile(
            optimizer=keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD()),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    loop = LoopConfig(local_sgd=LocalSGDConfig(sync_every=4))
    with pytest.raises(ConfigError, match=r"loss-scaled optimizer.*mixed_bfloat16"):
        Trainer(distribution, model, loop)
    with pytest.raises(ConfigError, match=r"checkpoint_every_steps \(6\) must be a multiple"):
        _trainer(sync_every=4, model_dir=str(tmp_path), checkpoint_every_steps=6)
