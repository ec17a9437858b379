"""The trainer's local SGD, reference-job and start-up flags, in this process."""

import json

import pytest
import tensorflow as tf

from tfdist.cli import train

pytestmark = pytest.mark.usefixtures("fresh_flags")


def _run(*args):
    with pytest.raises(SystemExit) as exited:
        train.main(["tfdist.train", *args])
    return exited.value.code


@pytest.mark.parametrize(
    "args, message",
    [
        (
            [
                "--strategy=parameter_server",
                "--num_ps=1",
                "--sync_every=8",
                "--mixed_precision=mixed_float16",
            ],
            "--sync_every (8) and --outer_optimizer ('none') cannot run with a loss-scaled",
        ),
        (
            ["--sync_every=8", "--checkpoint_every_steps=12", "--model_dir=m"],
            "--checkpoint_every_steps (12) must be a multiple of --sync_every (8)",
        ),
        (
            ["--outer_momentum=1.5", "--outer_optimizer=nesterov"],
            "outer_momentum (1.5) must be at least 0 and below 1",
        ),
        (["--image_shape=32x32"], "image_shape ('32x32') must be HEIGHT, WIDTH and CHANNELS"),
        (
            ["--image_shape=8x8x3"],
            "image_shape ((8, 8, 3)) shapes the generated --dataset=synthetic",
        ),
    ],
)
def test_mistakes_exit_2_with_one_line(capsys, args, message):
    assert _run(*args, "--epochs=1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_mirrored_local_sgd_on_the_image_job_reports_startup(tmp_path, monkeypatch):
    # Collective keys of its own (see tests/tfdist/training/test_local_sgd.py).
    monkeypatch.setattr(tf.distribute.MirroredStrategy, "_collective_key_base", 990_000)
    metrics = tmp_path / "metrics.json"
    assert (
        _run(
            "--strategy=mirrored",
            "--dataset=synthetic",
            "--image_shape=8x8x3",
            "--model=cnn",
            "--num_examples=512",
            "--global_batch_size=64",
            "--epochs=1",
            "--steps_per_loop=3",
            "--sync_every=2",
            "--outer_optimizer=sgd",
            f"--metrics_json={metrics}",
        )
        == 0
    )
    summary = json.loads(metrics.read_text())
    assert (summary["sync_every"], summary["outer_optimizer"], summary["steps"]) == (2, "sgd", 8)
    assert 0 < summary["startup_seconds"] < summary["wall_seconds"]
    assert summary["task_startup_seconds"] == [summary["startup_seconds"]]
