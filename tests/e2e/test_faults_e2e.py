"""Faults as real processes: preemption, a killed worker, restarts, a lost PS worker, a
silent peer. Each run must lose at most the steps since the last checkpoint and never hang."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from e2e_helpers import explain, run_trainer, start_command

# Long enough to interrupt (920 steps), deterministic data order.
JOB = [
    "--optimizer=sgd",
    "--learning_rate=0.05",
    "--seed=5",
    "--global_batch_size=32",
    "--epochs=20",
    "--steps_per_loop=4",
    "--checkpoint_every_steps=20",
]
STEPS_PER_EPOCH = 1500 // 32
TOTAL_STEPS = 20 * STEPS_PER_EPOCH


def _start(tmp_path, *flags):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    log = open(tmp_path / "run.log", "w")
    process = start_command([sys.executable, "-m", "tfdist.train", *flags], log, env=env)
    return process, log


def _wait_for_checkpoint(model_dir, at_least, process, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        steps = (
            [
                int(m.group(1))
                for name in os.listdir(model_dir / "checkpoints")
                for m in [re.match(r"ckpt-(\d+)\.index$", name)]
                if m
            ]
            if (model_dir / "checkpoints").exists()
            else []
        )
        if steps and max(steps) >= at_least:
            return max(steps)
        assert process.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint at step >= {at_least} within {timeout} s")


def _weights(model_dir):
    return [np.asarray(w) for w in keras.saving.load_model(model_dir / "model.keras").weights]


def _children(pid):
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in found.split()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the same multi_worker job, never interrupted."""
    tmp = tmp_path_factory.mktemp("reference")
    process, summary = run_trainer(tmp, "--num_workers=2", *JOB, f"--model_dir={tmp / 'm'}")
    assert process.returncode == 0, explain(process)
    assert summary["steps"] == TOTAL_STEPS
    _REFERENCE_HISTORY[:] = summary["history"]
    return _weights(tmp / "m")


_REFERENCE_HISTORY = []


@pytest.mark.parametrize(
    "signum, said",
    [(signal.SIGTERM, "preempted \\(SIGTERM\\)"), (signal.SIGINT, "interrupted \\(SIGINT\\)")],
)
def test_a_signal_saves_at_an_agreed_step_and_the_rerun_ends_identical(
    tmp_path, uninterrupted, signum, said
):
    """SIGTERM (a preemption) or SIGINT (Ctrl-C) to the launcher: both workers save at one
    step and exit with 128 + the signal, one line each and no traceback."""
    model_dir = tmp_path / "m"
    flags = ["--num_workers=2", *JOB, f"--model_dir={model_dir}"]
    process, log = _start(tmp_path, *flags)
    _wait_for_checkpoint(model_dir, 100, process)
    started = time.time()
    process.send_signal(signum)  # The launcher forwards it to both workers.
    code = process.wait(timeout=120)
    log.close()
    output = (tmp_path / "run.log").read_text()
    assert code == 128 + signum, output[-3000:]
    saved = re.findall(said + r" at step (\d+): saved checkpoint", output)
    assert len(saved) == 2 and saved[0] == saved[1], output[-3000:]  # Both agreed.
    assert int(saved[0]) < TOTAL_STEPS
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
    print(f"{signal.Signals(signum).name} to exit: {time.time() - started:.1f} s at {saved[0]}")
    rerun, summary = run_trainer(tmp_path, *flags)
    assert rerun.returncode == 0, explain(rerun)
    assert summary["restored_from"].endswith(f"ckpt-{saved[0]}")
    assert summary["steps"] == TOTAL_STEPS
    for a, b in zip(uninterrupted, _weights(model_dir), strict=False):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_killed_worker_then_same_command_resumes_to_identical_weights(tmp_path, uninterrupted):
    model_dir = tmp_path / "m"
    flags = ["--num_workers=2", *JOB, f"--model_dir={model_dir}"]
    process, log = _start(tmp_path, *flags)
    _wait_for_checkpoint(model_dir, 100, process)
    workers = _children(process.pid)
    assert len(workers) == 2, workers
    killed_at = time.time()
    os.kill(workers[1], signal.SIGKILL)
    code = process.wait(timeout=120)
    detected = time.time() - killed_at
    log.close()
    output = (tmp_path / "run.log").read_text()
    assert code != 0 and "killed by SIGKILL (root cause)" in output, output[-3000:]
    print(f"SIGKILL of worker:1 to the job's error: {detected:.1f} s")
    rerun, summary = run_trainer(tmp_path, *flags)
    assert rerun.returncode == 0, explain(rerun)
    lost = int(summary["restored_from"].rpartition("-")[2])
    reference = {e["epoch"]: e["train_loss"] for e in _REFERENCE_HISTORY}
    print(
        "restored",
        summary["restored_from"],
        [
            (e["epoch"], e["steps"], e["train_loss"], reference[e["epoch"]])
            for e in summary["history"]
        ][:3],
    )
    print((tmp_path / "run.log").read_text()[-1500:])
    assert summary["steps"] == TOTAL_STEPS and lost % 20 == 0
    for a, b in zip(uninterrupted, _weights(model_dir), strict=False):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_mirrored_killed_and_resumed_ends_identical(tmp_path):
    flags = ["--strategy=mirrored", *JOB]
    reference, _ = run_trainer(tmp_path / "ref", *flags, f"--model_dir={tmp_path / 'ref'}")
    assert reference.returncode == 0, explain(reference)
    model_dir = tmp_path / "m"
    process, log = _start(tmp_path, *flags, f"--model_dir={model_dir}")
    _wait_for_checkpoint(model_dir, 100, process)
    process.kill()
    process.wait(timeout=60)
    log.close()
    rerun, summary = run_trainer(tmp_path, *flags, f"--model_dir={model_dir}")
    assert rerun.returncode == 0, explain(rerun)
    assert summary["restored_from"] and summary["steps"] == TOTAL_STEPS
    for a, b in zip(_weights(tmp_path / "ref"), _weights(model_dir), strict=False):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def _task_pids(launcher_pid):
    """{"worker:1": pid, ...} of the launcher's children, from their TF_CONFIG."""
    tasks = {}
    for pid in _children(launcher_pid):
        try:
            environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"TF_CONFIG="):
                task = json.loads(item[len(b"TF_CONFIG=") :])["task"]
                tasks[f"{task['type']}:{task['index']}"] = pid
    return tasks


def test_max_restarts_restarts_the_cluster_after_a_killed_worker(tmp_path):
    model_dir = tmp_path / "m"
    process, log = _start(
        tmp_path,
        "--num_workers=2",
        *JOB,
        "--max_restarts=1",
        f"--model_dir={model_dir}",
        f"--metrics_json={tmp_path / 's.json'}",
    )
    _wait_for_checkpoint(model_dir, 100, process)
    os.kill(_task_pids(process.pid)["worker:1"], signal.SIGKILL)
    code = process.wait(timeout=400)
    log.close()
    output = (tmp_path / "run.log").read_text()
    assert code == 0, output[-3000:]
    assert "killed by SIGKILL); restarting the cluster (1/1)" in output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["steps"] == TOTAL_STEPS and summary["restored_from"]


def test_parameter_server_carries_on_when_a_worker_dies(tmp_path):
    flags = [
        "--strategy=parameter_server",
        "--num_workers=2",
        "--num_ps=1",
        "--epochs=30",
        "--global_batch_size=32",
        "--steps_per_loop=4",
        "--max_restarts=2",
        f"--model_dir={tmp_path / 'm'}",
        "--checkpoint_every_steps=100",
        f"--metrics_json={tmp_path / 's.json'}",
    ]
    process, log = _start(tmp_path, *flags)
    _wait_for_checkpoint(tmp_path / "m", 100, process)
    killed_at = time.time()
    os.kill(_task_pids(process.pid)["worker:1"], signal.SIGKILL)
    code = process.wait(timeout=400)
    log.close()
    output = (tmp_path / "run.log").read_text()
    assert code == 0, output[-3000:]
    assert "[worker:1] launch: worker:1 exited with code -9; restarting it (1/2)" in output
    restarted = output.find("restarting the cluster")  # The coordinator must carry on.
    causes = re.findall(r"\[chief:0\] (?:\w+\.)*\w+Error: .*", output[: max(restarted, 0)])
    assert restarted < 0, causes[-1:] + [output[max(0, restarted - 1500) : restarted]]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["steps"] == 30 * STEPS_PER_EPOCH and summary["val_accuracy"] >= 0.93
    print(f"PS worker lost at +{time.time() - killed_at:.0f} s before the end; finished anyway")


def test_a_silent_multi_worker_peer_fails_within_the_collective_timeout(tmp_path):
    process, log = _start(
        tmp_path,
        "--num_workers=2",
        *JOB,
        "--collective_timeout=15",
        f"--model_dir={tmp_path / 'm'}",
    )
    _wait_for_checkpoint(tmp_path / "m", 100, process)
    silent = _task_pids(process.pid)["worker:1"]
    os.kill(silent, signal.SIGSTOP)  # Alive, holding its sockets, answering nothing.
    stopped_at = time.time()
    try:
        code = process.wait(timeout=180)
    finally:
        try:
            os.kill(silent, signal.SIGKILL)
        except ProcessLookupError:
            pass
    waited = time.time() - stopped_at
    log.close()
    output = (tmp_path / "run.log").read_text()
    assert code != 0, output[-3000:]
    assert "(root cause)" in output
    print(f"silent peer to the job's error: {waited:.1f} s (collective_timeout 15 s)")
    assert waited < 15 + 60
