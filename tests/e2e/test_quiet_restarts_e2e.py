"""`python -m launch --max_restarts=1 --log_dir=DIR`, worker:1 SIGKILLed mid-run: quiet restarts.

The launcher prints one line about the failure (the root cause, what follows, where the
logs are) and none of what the other tasks print because of it: under multi_worker the
surviving worker's collective error and traceback, under parameter_server the chief's
connection errors about the worker restarted in place. Those are in the per-task log
files (DIR/attempt-1/worker-0.log), which keep every line, and the run still finishes.
"""

import os
import re
import signal
import sys
import time

import pytest
from chaos import task_pids
from e2e_helpers import REPO, start_command

TRAIN = [sys.executable, "-m", "tfdist.train", "--global_batch_size=32", "--steps_per_loop=4"]
CHECKPOINT_EVERY = 20
# What a survivor prints when its peer dies; none of it may reach the terminal.
PEER_ERROR = re.compile(r"Traceback|UnavailableError|UNAVAILABLE|Connection reset by peer")


def _has_checkpoint(model_dir) -> bool:
    folder = model_dir / "checkpoints"
    return folder.exists() and any(name.endswith(".index") for name in os.listdir(folder))


def _launcher_argv(tmp_path, launch_flags, train_flags):
    return [
        *(sys.executable, "-m", "launch", *launch_flags, "--max_restarts=1"),
        *(f"--log_dir={tmp_path / 'logs'}", "--", *TRAIN, *train_flags),
        *(f"--checkpoint_every_steps={CHECKPOINT_EVERY}", f"--model_dir={tmp_path / 'm'}"),
    ]


def _trainer_argv(tmp_path, train_flags):
    """The trainer launching its own cluster (no log_dir of the user's: a temporary one)."""
    return [
        *TRAIN,
        *("--strategy=multi_worker", "--num_workers=2", "--max_restarts=1", "--epochs=2"),
        *(f"--checkpoint_every_steps={CHECKPOINT_EVERY}", f"--model_dir={tmp_path / 'm'}"),
        *train_flags,
    ]


def _run_and_kill_worker_1(tmp_path, launch_flags, train_flags, argv=None):
    """Runs the launcher, SIGKILLs worker:1 after the first checkpoint; returns (code, output)."""
    model_dir = tmp_path / "m"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    env.pop("TF_CONFIG", None)
    argv = argv or _launcher_argv(tmp_path, launch_flags, train_flags)
    log_path = tmp_path / "terminal.log"
    with log_path.open("w") as terminal:
        launcher = start_command(argv, terminal, env=env)
        try:
            deadline = time.monotonic() + 60
            while not _has_checkpoint(model_dir):
                assert launcher.poll() is None, "the job ended before worker:1 could be killed"
                assert time.monotonic() < deadline, "no checkpoint within 60 s"
                time.sleep(0.05)
            os.kill(task_pids(launcher.pid)["worker:1"], signal.SIGKILL)
            code = launcher.wait(timeout=120)
        finally:
            if launcher.poll() is None:
                os.killpg(launcher.pid, signal.SIGKILL)
    return code, log_path.read_text()


def test_multi_worker_restart_prints_one_line_and_logs_the_survivors_traceback(tmp_path):
    code, output = _run_and_kill_worker_1(
        tmp_path,
        ["--strategy=multi_worker", "--num_workers=2"],
        ["--strategy=multi_worker", "--epochs=2"],
    )

    assert code == 0, output[-3000:]
    attempt = tmp_path / "logs" / "attempt-1"
    notes = [line for line in output.splitlines() if line.startswith("launch: attempt")]
    assert notes == [
        "launch: attempt 1 failed (worker:1 killed by SIGKILL); restarting the cluster (1/1); "
        f"full logs: {attempt}"
    ], output[-3000:]
    assert not PEER_ERROR.search(output), output[-3000:]
    survivor = (attempt / "worker-0.log").read_text()
    assert PEER_ERROR.search(survivor), survivor[-3000:]
    assert "tfdist.train: done" in (tmp_path / "logs" / "attempt-2" / "worker-0.log").read_text()
    print(
        f"terminal: {len(output.splitlines())} lines; worker:0's attempt-1 log: "
        f"{len(survivor.splitlines())} lines"
    )


def test_parameter_server_restart_in_place_prints_one_line_and_logs_the_chiefs_errors(tmp_path):
    code, output = _run_and_kill_worker_1(
        tmp_path,
        ["--strategy=parameter_server", "--num_workers=2", "--num_ps=1"],
        ["--strategy=parameter_server", "--epochs=3"],
    )

    assert code == 0, output[-3000:]
    worker_log = tmp_path / "logs" / "attempt-1" / "worker-1.log"
    notes = [line for line in output.splitlines() if "launch: worker:1 exited" in line]
    assert notes == [
        "[worker:1] launch: worker:1 exited with code -9; restarting it (1/1); "
        f"full log: {worker_log}"
    ], output[-3000:]
    assert "launch: attempt" not in output  # The cluster was not restarted.
    assert not PEER_ERROR.search(output), output[-3000:]
    assert "/job:worker/replica:0/task:1" not in output, output[-3000:]
    assert "[chief:0] tfdist.train: done" in output
    chief = (tmp_path / "logs" / "attempt-1" / "chief-0.log").read_text()
    assert "/job:worker/replica:0/task:1" in chief, chief[-3000:]
    print(
        f"terminal: {len(output.splitlines())} lines; chief:0's log: "
        f"{len(chief.splitlines())} lines"
    )


@pytest.mark.parametrize("verbose", [False, True], ids=["default", "verbose"])
def test_the_trainers_own_launch_is_quiet_unless_verbose(tmp_path, verbose):
    """`python -m tfdist.train --num_workers=2 --max_restarts=1`: the survivor's traceback
    is left to the logs, or with --verbose printed."""
    argv = _trainer_argv(tmp_path, ["--verbose"] if verbose else [])
    code, output = _run_and_kill_worker_1(tmp_path, [], [], argv=argv)

    assert code == 0, output[-3000:]
    notes = [line for line in output.splitlines() if "attempt 1 failed" in line]
    assert len(notes) == 1 and "(worker:1 killed by SIGKILL)" in notes[0], output[-3000:]
    assert bool(PEER_ERROR.search(output)) == verbose, output[-3000:]
