"""TensorBoard: scalars written by the chief, read back from the event files; profiler traces."""

import glob
import os

import keras
import pytest
import tensorflow as tf
from tensorflow.core.util import event_pb2

from tfdist.cli import train
from tfdist.config import ConfigError, parse_profile_steps
from tfdist.data.pipeline import load_source, make_dataset_fn
from tfdist.distribute.strategies import make_strategy
from tfdist.models import build_model
from tfdist.training.summaries import Summaries, tensorboard_dir
from tfdist.training.trainer import Trainer

DIGITS = load_source("digits")


def read_scalars(run_dir):
    """{tag: [(step, value), ...]} from every event file of one TensorBoard run."""
    scalars = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                assert value.metadata.plugin_data.plugin_name == "scalars"
                scalars.setdefault(value.tag, []).append(
                    (event.step, float(tf.make_ndarray(value.tensor)))
                )
    return scalars


def traces(run_dir):
    return glob.glob(os.path.join(run_dir, "plugins", "profile", "*", "*.xplane.pb"))


def _fit(log_dir, *, profile_steps=None):
    distribution = make_strategy("mirrored")
    keras.utils.set_random_seed(0)
    with distribution.strategy.scope():
        model = build_model("mlp", input_shape=DIGITS.input_shape, num_classes=10)
    trainer = Trainer(
        distribution,
        model=model,
        global_batch_size=64,
        steps_per_loop=3,
        callbacks=[Summaries(log_dir, profile_steps=profile_steps)],
    )
    train_fn = make_dataset_fn(DIGITS, "train", global_batch_size=64, training=True)
    val_fn = make_dataset_fn(DIGITS, "validation", global_batch_size=64, training=False)
    return trainer.fit(train_fn, epochs=2, steps_per_epoch=6, validation_fn=val_fn)


def test_scalars_per_epoch_and_per_loop_at_the_optimizer_step(tmp_path):
    history = _fit(str(tmp_path))
    train_scalars = read_scalars(tmp_path / "train")
    assert set(train_scalars) == {
        "loss",
        "accuracy",
        "learning_rate",
        "examples_per_sec",
        "seconds_per_step",
    }
    assert [step for step, _ in train_scalars["loss"]] == [6, 12]
    assert [value for _, value in train_scalars["loss"]] == pytest.approx(
        [e.train_loss for e in history.epochs]
    )
    assert [step for step, _ in train_scalars["examples_per_sec"]] == [3, 6, 9, 12]
    assert all(value > 0 for _, value in train_scalars["seconds_per_step"])
    assert train_scalars["learning_rate"][0][1] == pytest.approx(1e-3)
    validation = read_scalars(tmp_path / "validation")
    assert set(validation) == {"loss", "accuracy"}
    assert [step for step, _ in validation["accuracy"]] == [6, 12]
    assert [value for _, value in validation["accuracy"]] == pytest.approx(
        [e.val_accuracy for e in history.epochs]
    )
    assert not traces(tmp_path / "train")


def test_profile_steps_write_a_trace(tmp_path):
    _fit(str(tmp_path), profile_steps=(4, 5))
    assert len(traces(tmp_path / "train")) == 1


def test_profile_steps_must_be_an_ordered_pair():
    assert parse_profile_steps("10,20") == (10, 20) and parse_profile_steps(None) is None
    for text in ("5", "0,3", "7,2", "a,b", "1,2,3"):
        with pytest.raises(
            ConfigError,
            match=r"profile_steps .* must be two optimizer steps "
            r"FIRST,LAST .* e\.g\. --profile_steps=10,20",
        ):
            parse_profile_steps(text)
    with pytest.raises(ConfigError, match=r"profile_steps \(\(3, 2\)\) must be"):
        Summaries("logs", profile_steps=(3, 2))


def _main(*args):
    with pytest.raises(SystemExit) as exited:
        train.main(["tfdist.train", *args])
    return exited.value.code


def test_cli_writes_summaries_and_a_trace_under_model_dir(tmp_path, fresh_flags):
    assert (
        _main(
            "--strategy=one_device",
            "--epochs=2",
            "--steps_per_epoch=4",
            "--steps_per_loop=2",
            "--profile_steps=3,4",
            f"--model_dir={tmp_path}",
        )
        == 0
    )
    log_dir = tensorboard_dir(str(tmp_path))
    assert [step for step, _ in read_scalars(os.path.join(log_dir, "train"))["loss"]] == [4, 8]
    assert "accuracy" in read_scalars(os.path.join(log_dir, "validation"))
    assert len(traces(os.path.join(log_dir, "train"))) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--profile_steps=5"], "profile_steps ('5') must be two optimizer steps FIRST,LAST"),
        (["--profile_steps=3,4"], "--profile_steps ((3, 4)) needs --model_dir"),
    ],
)
def test_cli_profile_steps_mistakes_exit_2_with_one_line(args, message, fresh_flags, capsys):
    assert _main(*args, "--epochs=1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
