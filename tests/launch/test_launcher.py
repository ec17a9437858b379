"""Tests for launch.launcher: plans run for real (tiny Python tasks on loopback), attempt by
attempt as the RestartPolicy says.

`run_with_restarts` gets a plan function; each attempt is planned anew, and a task counts
its own starts in a file, so it can fail on the first attempts and succeed on a later one,
as a restarted cluster does.
"""

import io
import sys

import pytest

from launch import LaunchError, LaunchSpec, RestartPolicy, TaskLaunch, run_launch
from launch.launcher import run_with_restarts
from launch.task_logs import LaunchLogs

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


# Appends a line to COUNT, then exits 3 until it has started FAIL_TIMES + 1 times.
_COUNTING = """
import sys
path, fail_times = sys.argv[1], int(sys.argv[2])
with open(path, "a") as f:
    f.write("start\\n")
starts = len(open(path).read().splitlines())
print(f"start {starts}", flush=True)
sys.exit(3 if starts <= fail_times else 0)
"""


def _planner(count_file, *, fail_times, workers=1):
    """A plan() that returns fresh launches each call, and records how often it was called."""
    calls = []

    def plan(lost):
        assert lost == ()
        calls.append(len(calls) + 1)
        return [
            TaskLaunch(
                task_type="worker",
                index=0,
                argv=(sys.executable, "-c", _COUNTING, str(count_file), str(fail_times)),
                env={"PYTHONUNBUFFERED": "1"},
            )
        ] + [
            TaskLaunch(task_type="worker", index=i, argv=(sys.executable, "-c", "pass"), env={})
            for i in range(1, workers)
        ]

    return plan, calls


def test_a_task_that_fails_twice_succeeds_on_the_second_restart(tmp_path):
    plan, calls = _planner(tmp_path / "starts", fail_times=2, workers=2)
    output = io.StringIO()

    report = run_with_restarts(
        plan, restarts=RestartPolicy(max_restarts=2), output=output, stop_timeout=5
    )

    assert report.exit_code == 0 and report.restarts == 2
    assert calls == [1, 2, 3]  # The cluster is planned again for every attempt.
    assert [attempt.succeeded for attempt in report.attempts] == [False, False, True]
    assert report.attempts[0].root_cause.name == "worker:0"
    assert report.attempts[0].root_cause.exit_code == 3
    text = output.getvalue()
    assert "launch: attempt 1 failed (worker:0 " in text and "(1/2)" in text
    assert "launch: attempt 2 failed (worker:0 " in text and "(2/2)" in text
    assert "[worker:0] start 3" in text
    summary = report.summary().splitlines()
    assert summary[0] == "2 of 3 attempt(s) failed (2 restart(s)):"
    assert summary[-1] == "attempt 3: succeeded"


def test_gives_up_after_max_restarts_with_the_last_failure(tmp_path):
    plan, calls = _planner(tmp_path / "starts", fail_times=5)

    report = run_with_restarts(
        plan, restarts=RestartPolicy(max_restarts=1), output=io.StringIO(), stop_timeout=5
    )

    assert report.exit_code == 3 and report.restarts == 1 and calls == [1, 2]
    assert (tmp_path / "starts").read_text().count("start") == 2
    assert "    start 2" in report.summary().splitlines()  # The root cause's log tail.


def test_each_failed_attempt_gets_one_line_naming_its_logs(tmp_path):
    plan, _ = _planner(tmp_path / "starts", fail_times=5)
    output, logs = io.StringIO(), LaunchLogs(tmp_path / "logs")

    run_with_restarts(
        plan, restarts=RestartPolicy(max_restarts=1), output=output, stop_timeout=5, logs=logs
    )

    notes = [line for line in output.getvalue().splitlines() if line.startswith("launch:")]
    assert notes == [
        'launch: attempt 1 failed (worker:0 exit code 3: "start 1"); restarting the cluster '
        "(1/1); "
        f"full logs: {tmp_path / 'logs' / 'attempt-1'}",
        'launch: attempt 2 failed (worker:0 exit code 3: "start 2"); giving up: the restarts '
        "are spent "
        f"(1/1); full logs: {tmp_path / 'logs' / 'attempt-2'}",
    ]
    for attempt in (1, 2):
        log = tmp_path / "logs" / f"attempt-{attempt}" / "worker-0.log"
        assert log.read_text() == f"start {attempt}\n"


def test_run_launch_logs_to_a_fresh_temp_dir_without_log_dir(tmp_path):
    code = "import sys; print('boom'); sys.exit(3)"
    spec = LaunchSpec(
        strategy="multi_worker", command=[PY, "-c", code], base_env={}, isolate_network=False
    )
    output = io.StringIO()

    run_launch(spec, output=output)  # tests/launch/conftest.py: the temp dir is tmp_path.

    (logs,) = tmp_path.glob("launch-*")
    assert f"giving up (--max_restarts=0); full logs: {logs / 'attempt-1'}" in output.getvalue()
    assert (logs / "attempt-1" / "worker-0.log").read_text() == "boom\n"


def test_no_restart_when_the_first_attempt_succeeds(tmp_path):
    plan, calls = _planner(tmp_path / "starts", fail_times=0)

    report = run_with_restarts(
        plan, restarts=RestartPolicy(max_restarts=3), output=io.StringIO(), stop_timeout=5
    )

    assert report.exit_code == 0 and report.restarts == 0 and calls == [1]


def _sized_planner(num_workers, *, failing):
    """A plan(lost) of `num_workers - lost` workers; worker i exits 3 if failing(i, size)."""
    calls = []

    def plan(lost):
        calls.append(len(lost))
        size = num_workers - len(lost)
        return [
            TaskLaunch(
                task_type="worker",
                index=i,
                argv=(
                    sys.executable,
                    "-c",
                    f"import sys; print('{i} of {size}'); sys.exit({3 if failing(i, size) else 0})",
                ),
                env={},
            )
            for i in range(size)
        ]

    return plan, calls


def test_min_workers_goes_on_without_a_worker_that_cannot_come_back():
    # worker:2 of 3 always fails; with two workers everyone succeeds.
    plan, calls = _sized_planner(3, failing=lambda i, size: i == 2)
    output = io.StringIO()

    report = run_with_restarts(
        plan, restarts=RestartPolicy(max_restarts=1, min_workers=2), output=output, stop_timeout=5
    )

    assert report.exit_code == 0 and report.workers_lost == ("worker:2",)
    assert calls == [0, 0, 1]  # Two attempts of 3 workers (1 restart), then 2 workers.
    assert [a.succeeded for a in report.attempts] == [False, False, True]
    assert [len(a.tasks) for a in report.attempts] == [3, 3, 2]
    text = output.getvalue()
    assert "restarting the cluster (1/1)" in text
    assert (
        'launch: attempt 2 failed (worker:2 exit code 3: "2 of 3"); its restarts are spent: going '
        "on without it with 2 of 3 workers (--min_workers=2), from the last checkpoint" in text
    )
    assert "[worker:1] 1 of 2" in text
    assert "workers lost: worker:2" in report.summary().splitlines()[0]


def test_min_workers_shrinks_once_per_spent_budget_and_stops_at_the_minimum():
    # worker:0 fails at every size: 3 -> 2 workers, then the launch fails at the minimum.
    plan, calls = _sized_planner(3, failing=lambda i, size: i == 0)

    report = run_with_restarts(
        plan,
        restarts=RestartPolicy(max_restarts=1, min_workers=2),
        output=io.StringIO(),
        stop_timeout=5,
    )

    assert report.exit_code == 3 and report.workers_lost == ("worker:0",)
    assert calls == [0, 0, 1, 1]  # Each size gets max_restarts restarts of its own.


def test_without_min_workers_the_launch_ends_when_the_restarts_are_spent():
    plan, calls = _sized_planner(3, failing=lambda i, size: i == 2)

    report = run_with_restarts(
        plan, restarts=RestartPolicy(max_restarts=0), output=io.StringIO(), stop_timeout=5
    )

    assert report.exit_code == 3 and report.workers_lost == () and calls == [0]


def test_a_failure_of_a_task_that_is_not_a_worker_ends_the_launch():
    def plan(lost):
        assert lost == ()
        return [
            TaskLaunch(
                task_type="dispatcher",
                index=0,
                argv=(sys.executable, "-c", "import sys; sys.exit(4)"),
                env={},
            ),
            TaskLaunch(
                task_type="worker",
                index=0,
                argv=(sys.executable, "-c", "import time; time.sleep(30)"),
                env={},
            ),
            TaskLaunch(
                task_type="worker",
                index=1,
                argv=(sys.executable, "-c", "import time; time.sleep(30)"),
                env={},
            ),
        ]

    report = run_with_restarts(
        plan,
        restarts=RestartPolicy(max_restarts=0, min_workers=1),
        output=io.StringIO(),
        stop_timeout=5,
    )

    assert report.exit_code == 4 and report.workers_lost == ()
