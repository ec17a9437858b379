"""A cluster tfdist did not start: a hand-written parameter_server TF_CONFIG (chief, 1 ps,
2 workers on free loopback ports), each task `python -m tfdist.train
--strategy=parameter_server` with its own TF_CONFIG and no --num_workers/--num_ps: the
trainer takes the cluster's shape from TF_CONFIG. Flags that disagree with it fail every
task with one line."""

import json
import os
import subprocess
import sys
import time

import pytest
from e2e_helpers import REPO

from launch import free_ports

TRAIN = [sys.executable, "-m", "tfdist.train"]


def _cluster():
    ports = iter(free_ports(4))
    return {
        "chief": [f"localhost:{next(ports)}"],
        "ps": [f"localhost:{next(ports)}"],
        "worker": [f"localhost:{next(ports)}", f"localhost:{next(ports)}"],
    }


def _env(jobs, job, index):
    env = dict(
        os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", TF_NUM_INTRAOP_THREADS="1"
    )
    env["TF_CONFIG"] = json.dumps({"cluster": jobs, "task": {"type": job, "index": index}})
    return env


def _start(tmp_path, jobs, flags):
    """Starts every task (servers first); returns {name: (process, log path)}."""
    tasks = {}
    for job in ("ps", "worker", "chief"):
        for index in range(len(jobs[job])):
            log = tmp_path / f"{job}-{index}.log"
            with open(log, "w") as out:
                process = subprocess.Popen(
                    [*TRAIN, *flags],
                    cwd=REPO,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=_env(jobs, job, index),
                )
            tasks[f"{job}:{index}"] = (process, log)
    return tasks


def _stop(tasks):
    for process, _ in tasks.values():
        if process.poll() is None:
            process.kill()
        process.wait()


def _logs(tasks):
    return "\n".join(
        f"--- {name}: exit {process.poll()}\n{log.read_text()[-3000:]}"
        for name, (process, log) in tasks.items()
    )


def test_hand_written_parameter_server_cluster_trains_digits(tmp_path):
    metrics = tmp_path / "metrics.json"
    tasks = _start(
        tmp_path,
        _cluster(),
        [
            "--strategy=parameter_server",
            "--dataset=digits",
            "--epochs=2",
            f"--metrics_json={metrics}",
        ],
    )
    try:
        chief, log = tasks["chief:0"]
        code = chief.wait(timeout=300)
        servers_alive = [
            name
            for name, (process, _) in tasks.items()
            if name != "chief:0" and process.poll() is None
        ]
        assert code == 0, _logs(tasks)
    finally:
        _stop(tasks)
    assert servers_alive == ["ps:0", "worker:0", "worker:1"], _logs(tasks)
    assert "tfdist.train: done - val_accuracy " in log.read_text(), _logs(tasks)
    summary = json.loads(metrics.read_text())
    assert (summary["strategy"], summary["num_workers"]) == ("parameter_server", 2), summary
    assert summary["val_accuracy"] > 0.8, summary
    print(
        f"hand-written TF_CONFIG cluster: val_accuracy {summary['val_accuracy']:.4f}, "
        f"{summary['examples_per_sec']:,.0f} examples/s"
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--strategy=parameter_server", "--num_workers=3"],
            "tfdist.train: error: --num_workers (3) does not agree with TF_CONFIG, whose "
            "cluster has "
            "2 worker(s); pass --num_workers=2 or leave --num_workers unset (TF_CONFIG decides).",
        ),
        (
            ["--strategy=multi_worker"],
            "tfdist.train: error: strategy 'multi_worker' cannot run in the TF_CONFIG "
            "cluster (chief, "
            "worker, ps), which has 'ps' tasks; pass --strategy=parameter_server or drop "
            "the ps job "
            "from TF_CONFIG.",
        ),
    ],
    ids=["num_workers", "multi_worker"],
)
def test_flags_that_disagree_with_tf_config_fail_every_task_with_one_line(tmp_path, flags, message):
    tasks = _start(tmp_path, _cluster(), flags)
    try:
        deadline = time.monotonic() + 120
        codes = {
            name: process.wait(timeout=max(1, deadline - time.monotonic()))
            for name, (process, _) in tasks.items()
        }
    finally:
        _stop(tasks)
    assert set(codes.values()) == {2}, _logs(tasks)
    for name, (_, log) in tasks.items():
        lines = [line for line in log.read_text().splitlines() if line.startswith("tfdist.train:")]
        assert lines == [message], (name, log.read_text()[-2000:])
