"""Tests for launch.launcher.run_launch: a plan run for real (tiny Python tasks on loopback)."""

import io
import sys

import pytest

from launch import LaunchError, LaunchSpec, run_launch

PY = sys.executable


def test_a_failed_attempt_is_planned_anew_and_run_again(tmp_path):
    marker = tmp_path / "failed_once"
    code = (
        f"import os, pathlib, sys; m = pathlib.Path({str(marker)!r}); "
        "first = not m.exists(); m.touch(); print('port', os.environ['TF_CONFIG'][-40:]); "
        "sys.exit(3 if first else 0)"
    )
    lines, output = [], io.StringIO()
    spec = LaunchSpec(
        strategy="multi_worker", command=[PY, "-c", code], base_env={}, isolate_network=False
    )

    report = run_launch(spec, announce=lines.append, output=output, max_restarts=1)

    assert report.exit_code == 0 and report.restarts == 1
    assert report.attempts[0].exit_code == 3
    assert len(lines) == 2 and lines[0] != lines[1]  # Fresh free ports for the second attempt.
    for line in lines:
        assert line.startswith("starting multi_worker cluster: worker:0 at localhost:")
        assert "; network: NOT isolated (turned off with --noisolate_network); " in line
    assert "restarting the cluster (1/1)" in output.getvalue()


def test_a_cluster_not_on_loopback_says_why_it_is_not_isolated():
    lines = []
    spec_elsewhere = LaunchSpec(
        strategy="multi_worker", command=[PY, "-c", "pass"], base_env={}, host="node9", ports=[1]
    )

    assert run_launch(spec_elsewhere, announce=lines.append, output=io.StringIO()).exit_code == 0

    assert lines[0].endswith(
        "network: NOT isolated (the cluster's addresses are not on "
        "loopback; only a loopback cluster can be isolated); TensorFlow "
        "listens on all interfaces without authentication on ports 1: "
        "run only on a trusted network."
    )


def test_a_wrong_spec_raises_before_anything_starts():
    with pytest.raises(LaunchError, match=r"num_ps \(0\) must be at least 1"):
        run_launch(LaunchSpec(strategy="parameter_server", command=["x"]))


# Exits 3 as the last of three workers; with fewer workers every task succeeds.
_LAST_OF_THREE_FAILS = (
    "import json, os, sys; c = json.loads(os.environ['TF_CONFIG']); "
    "n = len(c['cluster']['worker']); i = c['task']['index']; print(f'{i} of {n}'); "
    "sys.exit(3 if n == 3 and i == 2 else 0)"
)


def test_min_workers_replans_a_smaller_cluster_with_a_fresh_tf_config():
    lines, output = [], io.StringIO()
    spec = LaunchSpec(
        strategy="multi_worker",
        command=[PY, "-c", _LAST_OF_THREE_FAILS],
        num_workers=3,
        base_env={},
        isolate_network=False,
    )

    report = run_launch(spec, announce=lines.append, output=output, max_restarts=1, min_workers=2)

    assert report.exit_code == 0 and report.workers_lost == ("worker:2",)
    assert [len(attempt.tasks) for attempt in report.attempts] == [3, 3, 2]
    assert lines[-1].count(" at localhost:") == 2  # The last plan: worker:0 and worker:1.
    assert "[worker:1] 1 of 2" in output.getvalue()


def test_resize_makes_the_smaller_spec():
    seen = []

    def resize(spec, num_workers):
        seen.append(num_workers)
        return LaunchSpec(
            strategy="multi_worker",
            num_workers=num_workers,
            base_env={},
            command=[PY, "-c", f"assert {num_workers} == 2"],
            isolate_network=False,
        )

    spec = LaunchSpec(
        strategy="multi_worker",
        command=[PY, "-c", "import sys; sys.exit(5)"],
        num_workers=3,
        base_env={},
        isolate_network=False,
    )
    report = run_launch(spec, output=io.StringIO(), min_workers=2, resize=resize)

    assert report.exit_code == 0 and seen == [2]


@pytest.mark.parametrize(
    "spec, min_workers, message",
    [
        (
            LaunchSpec(strategy="multi_worker", command=["x"], num_workers=2),
            3,
            r"^min_workers \(3\) must be at most num_workers \(2\); pass --min_workers=2 or "
            r"fewer\.$",
        ),
        (
            LaunchSpec(strategy="parameter_server", command=["x"], num_workers=2, num_ps=1),
            1,
            r"^min_workers \(1\) is for strategy 'multi_worker', not 'parameter_server'",
        ),
        (
            LaunchSpec(strategy="multi_worker", command=["x"], num_workers=2),
            0,
            r"^min_workers \(0\) must be an integer of at least 1",
        ),
    ],
)
def test_a_wrong_min_workers_raises_before_anything_starts(spec, min_workers, message):
    with pytest.raises(LaunchError, match=message):
        run_launch(spec, min_workers=min_workers)


def test_the_gpus_of_a_lost_worker_leave_the_plan():
    # The worker given GPU "b" fails wherever it runs, as a broken GPU would make it.
    code = (
        "import os, sys; g = os.environ['CUDA_VISIBLE_DEVICES']; print('gpu', g); "
        "sys.exit(3 if g == 'b' else 0)"
    )
    output = io.StringIO()
    spec = LaunchSpec(
        strategy="multi_worker",
        command=[PY, "-c", code],
        num_workers=3,
        base_env={},
        gpus_per_worker=1,
        gpu_ids=["a", "b", "c"],
        isolate_network=False,
    )

    report = run_launch(spec, output=output, min_workers=2)

    assert report.exit_code == 0 and report.workers_lost == ("worker:1",)
    last = report.attempts[-1]
    assert [task.name for task in last.tasks] == ["worker:0", "worker:1"]
    assert "[worker:1] gpu c" in output.getvalue()
