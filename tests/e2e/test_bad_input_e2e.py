"""The README's bad-input table, row by row, as real processes: one line naming the cause
and the fix, a non-zero exit, nothing lost, no hang."""

import json
import os
import re
import socket
import sys

import pytest
from e2e_helpers import explain, run_command, run_trainer

TRAIN = [sys.executable, "-m", "tfdist.train"]
SHORT = ["--epochs=1", "--steps_per_epoch=5"]


def _last_line(process):
    """The trainer's own one-line message (TensorFlow may log after it at exit)."""
    lines = [
        line
        for line in process.stderr.splitlines()
        if line.startswith(("tfdist.train:", "launch:"))
    ]
    return lines[-1] if lines else process.stderr[-2000:]


def _cluster(ports, index):
    return json.dumps(
        {
            "cluster": {"worker": [f"localhost:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
    )


@pytest.mark.parametrize(
    "tf_config, message",
    [
        ('{"cluster": {"worker": ["localhost:1"]}}', "'task' must be an object"),
        (
            '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 4}}',
            "task index 4 is out of range",
        ),
        (
            '{"cluster": {"worker": ["h:1", "h:1"]}, "task": {"type": "worker", "index": 0}}',
            "used by both worker:0 and worker:1",
        ),
    ],
)
def test_inconsistent_tf_config(tf_config, message):
    process = run_command(TRAIN + SHORT, env={"TF_CONFIG": tf_config}, timeout=120)
    assert process.returncode == 2, explain(process)
    assert message in _last_line(process) and "TF_CONFIG is malformed" in _last_line(process)


def test_port_already_taken():
    with socket.socket() as holder, socket.socket() as other:
        holder.bind(("localhost", 0))
        holder.listen()
        other.bind(("localhost", 0))
        ports = [holder.getsockname()[1], other.getsockname()[1]]
        other.close()
        process = run_command(TRAIN + SHORT, env={"TF_CONFIG": _cluster(ports, 0)}, timeout=120)
    assert process.returncode == 2, explain(process)
    assert (
        f"could not start the gRPC server of task worker:0 on localhost:{ports[0]}: the "
        "port is already in use"
    ) in _last_line(process)


def test_model_dir_not_writable(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    process, _ = run_trainer(tmp_path, *SHORT, f"--model_dir={blocker / 'sub'}", timeout=120)
    assert process.returncode == 2, explain(process)
    assert "is not writable" in _last_line(process) and "--model_dir" in _last_line(process)


def test_checkpoint_of_another_model(tmp_path):
    first, _ = run_trainer(tmp_path, *SHORT, f"--model_dir={tmp_path / 'm'}")
    assert first.returncode == 0, explain(first)
    other, _ = run_trainer(tmp_path, "--model=cnn", *SHORT, f"--model_dir={tmp_path / 'm'}")
    assert other.returncode == 2, explain(other)
    assert "does not fit this model" in _last_line(other)


def test_corrupt_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    model_dir = tmp_path / "m"
    first, _ = run_trainer(
        tmp_path,
        "--epochs=2",
        "--steps_per_epoch=5",
        "--keep_checkpoints=5",
        f"--model_dir={model_dir}",
    )
    assert first.returncode == 0, explain(first)
    newest = model_dir / "checkpoints" / "ckpt-10.data-00000-of-00001"
    newest.write_bytes(b"\0garbage" * 16)  # A crash while writing left this behind.
    again, summary = run_trainer(
        tmp_path, "--epochs=3", "--steps_per_epoch=5", f"--model_dir={model_dir}"
    )
    assert again.returncode == 0, explain(again)
    assert summary["restored_from"].endswith("ckpt-5") and summary["steps"] == 15
    assert "skipping corrupt checkpoint" in again.stdout + again.stderr


def test_worker_that_exits_at_import_time():
    process = run_command(
        [
            sys.executable,
            "-m",
            "launch",
            "--strategy=multi_worker",
            "--num_workers=2",
            "--",
            sys.executable,
            "-c",
            "import no_such_module_tfdist",
        ],
        timeout=120,
    )
    assert process.returncode == 1, explain(process)
    assert "failed with exit code 1 (root cause)" in process.stderr
    assert "ModuleNotFoundError: No module named 'no_such_module_tfdist'" in process.stderr


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    model_dir = tmp_path / "m"
    bad, _ = run_trainer(
        tmp_path,
        "--epochs=1",
        "--steps_per_epoch=10",
        "--optimizer=sgd",
        "--learning_rate=1e30",
        "--steps_per_loop=1",
        "--checkpoint_every_steps=1",
        f"--model_dir={model_dir}",
    )
    assert bad.returncode == 1, explain(bad)
    line = _last_line(bad)
    found = re.search(
        r"training loss became NaN/inf by step (\d+) \(epoch 1\); the last good "
        r"checkpoint is \S+ckpt-(\d+)\.",
        line,
    )
    assert found, line
    step, kept = int(found.group(1)), int(found.group(2))
    assert kept == step - 1
    names = os.listdir(model_dir / "checkpoints")
    assert not any(name.startswith(f"ckpt-{step}.") for name in names), names
