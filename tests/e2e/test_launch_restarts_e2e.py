"""`python -m launch --strategy=parameter_server --max_restarts=1`, a worker SIGKILLed mid-run.

The chief runs the trainer (`python -m tfdist.train`, with the TF_CONFIG the launcher gives
it) and tfdist's servers run on the workers and the ps. The killed worker's server is
started again in place while the chief's coordinator carries on: the chief keeps its pid
and trains on past the kill, the cluster is never restarted, and the job ends at exactly
its planned step without restoring a checkpoint, so no step is redone.
"""

import json
import os
import signal
import sys
import time

import pytest
from chaos import task_pids
from e2e_helpers import REPO, start_command

EPOCHS = 6
STEPS = EPOCHS * (1500 // 32)  # digits: 1,500 training examples, global batch 32.
CHECKPOINT_EVERY = 20


def _newest_checkpoint(model_dir) -> int:
    folder = model_dir / "checkpoints"
    names = os.listdir(folder) if folder.exists() else []
    return max(
        (int(name[5:-6]) for name in names if name.startswith("ckpt-") and name.endswith(".index")),
        default=0,
    )


def _wait_for_checkpoint(model_dir, at_least, launcher, timeout=120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        step = _newest_checkpoint(model_dir)
        if step >= at_least:
            return step
        assert launcher.poll() is None, "the job ended before the test could go on"
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint at step {at_least} or later within {timeout} s")


def _first_attempt_logs(log_dir) -> str:
    """The last lines of each task's log in the first attempt, for a failure's message."""
    folder = log_dir / "attempt-1"
    return "\n".join(
        f"--- {path.name}:\n" + "\n".join(path.read_text().splitlines()[-30:])
        for path in sorted(folder.glob("*.log"))
    )


@pytest.mark.parametrize("local_steps", [[], ["--sync_every=8"]], ids=["", "sync_every_8"])
def test_a_killed_parameter_server_worker_restarts_in_place(tmp_path, local_steps):
    """With --sync_every the restarted worker's own copy of the weights and optimizer are
    made again on it (tfdist.training.ps_local_steps)."""
    model_dir, metrics = tmp_path / "m", tmp_path / "metrics.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    env.pop("TF_CONFIG", None)
    log = (tmp_path / "run.log").open("w")
    launcher = start_command(
        [
            *(sys.executable, "-m", "launch", "--strategy=parameter_server"),
            *("--num_workers=2", "--num_ps=1", "--max_restarts=1"),
            *(f"--log_dir={tmp_path / 'logs'}", "--"),
            *(sys.executable, "-m", "tfdist.train", "--strategy=parameter_server"),
            *(f"--epochs={EPOCHS}", "--global_batch_size=32", "--steps_per_loop=4"),
            *(f"--checkpoint_every_steps={CHECKPOINT_EVERY}", f"--model_dir={model_dir}"),
            f"--metrics_json={metrics}",
            *local_steps,
        ],
        log,
        env=env,
    )
    try:
        killed_at = _wait_for_checkpoint(model_dir, CHECKPOINT_EVERY, launcher)
        before = task_pids(launcher.pid)
        os.kill(before["worker:1"], signal.SIGKILL)
        _wait_for_checkpoint(model_dir, killed_at + 2 * CHECKPOINT_EVERY, launcher)
        after = task_pids(launcher.pid)
        code = launcher.wait(timeout=120)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
        log.close()
    output = (tmp_path / "run.log").read_text()

    assert code == 0, output[-3000:]
    assert "[worker:1] launch: worker:1 exited with code -9; restarting it (1/1)" in output
    assert after["chief:0"] == before["chief:0"]  # The chief trained on past the kill,
    assert after["worker:1"] != before["worker:1"]  # beside the restarted worker:1.
    assert "restarting the cluster" not in output, _first_attempt_logs(tmp_path / "logs")
    assert output.count("launch: starting parameter_server cluster") == 1
    summary = json.loads(metrics.read_text())
    assert summary["steps"] == STEPS  # The planned step, no step redone:
    assert summary["restored_from"] is None  # nothing was restored from a checkpoint.
    if local_steps:  # Calls of 4 steps (--steps_per_loop=4): a round each, not a step.
        assert STEPS / 4 <= summary["ps_updates"] < STEPS / 2, summary["ps_updates"]
    print(f"worker:1 killed after the checkpoint at step {killed_at} of {STEPS}")
