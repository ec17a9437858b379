"""Slurm tasks on loopback: `python -m launch.slurm.task` with the variables srun sets.

Each test starts one process per Slurm task, on one "node" (localhost), with the
SLURM_* variables srun would give it, and checks they form the cluster and train
digits.
"""

import json
import os
import socket
import subprocess
import sys
import time

from e2e_helpers import REPO

PY = sys.executable


def _free_port_base(count):
    """Returns a port P such that P..P+count-1 are all free now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("localhost", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("localhost", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports")


def _slurm_env(rank, num_tasks):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_NUM_INTRAOP_THREADS="1",
               OMP_NUM_THREADS="1", SLURM_JOB_ID="4242", SLURM_PROCID=str(rank),
               SLURM_NTASKS=str(num_tasks), SLURM_STEP_NODELIST="localhost",
               SLURM_JOB_NODELIST="localhost", SLURM_STEP_TASKS_PER_NODE=str(num_tasks),
               SLURM_LOCALID=str(rank), SLURM_NODEID="0")
    env.pop("TF_CONFIG", None)
    return env


def _run_slurm_tasks(tmp_path, *, strategy, num_tasks, task_flags, trainer_flags,
                     timeout=300):
    """Runs every task to its end; returns (exit codes, logs, metrics summary or None)."""
    metrics = tmp_path / "metrics.json"
    argv = [PY, "-m", "launch.slurm.task", f"--strategy={strategy}",
            f"--port_base={_free_port_base(num_tasks)}", *task_flags, "--",
            PY, "-m", "tfdist.train", *trainer_flags, "--epochs=3",
            f"--metrics_json={metrics}"]
    logs = [tmp_path / f"task{rank}.log" for rank in range(num_tasks)]
    procs = []
    for rank, log in enumerate(logs):
        with open(log, "w") as out:
            procs.append(subprocess.Popen(argv, cwd=REPO, env=_slurm_env(rank, num_tasks),
                                          stdout=out, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + timeout
    try:
        codes = [proc.wait(timeout=max(1, deadline - time.monotonic())) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    texts = [log.read_text() for log in logs]
    summary = json.loads(metrics.read_text()) if metrics.exists() else None
    return codes, texts, summary


def _explain(codes, logs):
    return "\n".join(f"--- task {rank}: exit {code}\n{log[-3000:]}"
                     for rank, (code, log) in enumerate(zip(codes, logs)))


def test_two_slurm_tasks_train_multi_worker(tmp_path):
    codes, logs, summary = _run_slurm_tasks(
        tmp_path, strategy="multi_worker", num_tasks=2, task_flags=[],
        trainer_flags=["--strategy=multi_worker"])

    assert codes == [0, 0], _explain(codes, logs)
    assert "SLURM_PROCID 0 on localhost is worker:0 of a multi_worker cluster" in logs[0]
    assert "SLURM_PROCID 1 on localhost is worker:1 of a multi_worker cluster" in logs[1]
    assert (summary["strategy"], summary["num_workers"]) == ("multi_worker", 2), summary
    assert summary["num_replicas"] == 2
    assert summary["val_accuracy"] > 0.8, summary


def test_four_slurm_tasks_train_parameter_server_and_servers_stop(tmp_path):
    codes, logs, summary = _run_slurm_tasks(
        tmp_path, strategy="parameter_server", num_tasks=4, task_flags=["--num_ps=1"],
        trainer_flags=["--strategy=parameter_server", "--num_ps=1"])

    assert codes == [0, 0, 0, 0], _explain(codes, logs)
    roles = ["chief:0", "ps:0", "worker:0", "worker:1"]
    for rank, (role, log) in enumerate(zip(roles, logs)):
        assert f"SLURM_PROCID {rank} on localhost is {role} of a parameter_server" in log
    for log in logs[1:]:  # The servers stop by themselves once the chief has finished.
        assert "has finished; stopping this server." in log, _explain(codes, logs)
    assert (summary["strategy"], summary["num_workers"]) == ("parameter_server", 2), summary
    assert summary["val_accuracy"] > 0.8, summary
