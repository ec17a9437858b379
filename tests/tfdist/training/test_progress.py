"""Progress: a redrawn bar with ETA on a terminal, one line per epoch anywhere else."""

import io
import types

import keras
import pytest

from tfdist.cli.job import build_callbacks
from tfdist.config import TrainConfig
from tfdist.data.pipeline import load_source, make_dataset_fn
from tfdist.distribute.strategies import TaskRole, make_strategy
from tfdist.models import build_model
from tfdist.training.progress import ProgressBar, format_duration, is_terminal
from tfdist.training.trainer import Trainer

DIGITS = load_source("digits")


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def _fit_with(stream, *, epochs=3):
    distribution = make_strategy("one_device")
    keras.utils.set_random_seed(0)
    with distribution.strategy.scope():
        model = build_model("mlp", input_shape=DIGITS.input_shape, num_classes=10)
    trainer = Trainer(
        distribution,
        model=model,
        global_batch_size=64,
        steps_per_loop=2,
        callbacks=[ProgressBar(stream=stream)],
    )
    train = make_dataset_fn(DIGITS, "train", global_batch_size=64, training=True)
    val = make_dataset_fn(DIGITS, "validation", global_batch_size=64, training=False)
    trainer.fit(train, epochs=epochs, steps_per_epoch=5, validation_fn=val)
    return stream.getvalue()


def test_terminal_gets_a_redrawn_bar_then_one_summary_line_per_epoch():
    text = _fit_with(FakeTerminal())
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 4  # Three finished epochs, each ends the line.
    for number, line in enumerate(lines[:3], start=1):
        redraws = line.split("\r")[1:]
        assert len(redraws) == 4, redraws  # Loops of 2, 2 and 1 steps, then the summary.
        assert redraws[0].startswith(f"epoch {number}/3 [") and " 2/5 - ETA " in redraws[0]
        assert "loss " in redraws[0] and "examples/s" in redraws[0]
        assert " 5/5 - ETA 0:00 " in redraws[2] or number < 3
        assert redraws[-1].startswith(f"epoch {number}/3 - loss ")
        assert "val_accuracy" in redraws[-1]


def test_pipe_or_file_gets_one_plain_line_per_epoch():
    lines = _fit_with(io.StringIO()).splitlines()
    assert len(lines) == 3 and not any("\r" in line or "ETA" in line for line in lines)
    assert [line.split(" - ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("val_accuracy" in line and "examples/s" in line for line in lines)


def test_helpers():
    assert format_duration(75) == "1:15" and format_duration(3725) == "1:02:05"
    assert format_duration(-3) == "0:00"
    assert is_terminal(FakeTerminal()) and not is_terminal(io.StringIO())
    closed = io.StringIO()
    closed.close()
    assert not is_terminal(closed)  # isatty() of a closed stream raises ValueError.


@pytest.mark.parametrize(
    "is_chief, verbose, model_dir, expected",
    [
        (True, False, None, ["ProgressBar"]),
        (True, False, "run", ["ProgressBar", "Summaries"]),
        (False, False, "run", []),
        (False, True, "run", ["ProgressBar"]),
    ],
    ids=["chief", "chief_model_dir", "worker", "worker_verbose"],
)
def test_job_shows_progress_on_the_chief_and_elsewhere_only_when_verbose(
    is_chief, verbose, model_dir, expected
):
    distribution = types.SimpleNamespace(role=TaskRole("worker", 0 if is_chief else 1, is_chief))
    config = TrainConfig(model_dir=model_dir, verbose=verbose)
    assert [type(c).__name__ for c in build_callbacks(config, distribution)] == expected
