"""launch.restarts.run_with_restarts with real child processes (tiny Python scripts).

Each attempt is planned anew; a task counts its own starts in a file, so it can fail
on the first attempts and succeed on a later one, as a restarted cluster does.
"""

import io
import sys

import pytest

from launch import LaunchError, TaskLaunch
from launch.restarts import run_with_restarts

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

    report = run_with_restarts(plan, max_restarts=2, output=output, stop_timeout=5)

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

    report = run_with_restarts(plan, max_restarts=1, output=io.StringIO(), stop_timeout=5)

    assert report.exit_code == 3 and report.restarts == 1 and calls == [1, 2]
    assert (tmp_path / "starts").read_text().count("start") == 2
    assert "    start 2" in report.summary().splitlines()  # The root cause's log tail.


def test_no_restart_when_the_first_attempt_succeeds(tmp_path):
    plan, calls = _planner(tmp_path / "starts", fail_times=0)

    report = run_with_restarts(plan, max_restarts=3, output=io.StringIO(), stop_timeout=5)

    assert report.exit_code == 0 and report.restarts == 0 and calls == [1]


@pytest.mark.parametrize("value", [-1, 1.5, True, "2"])
def test_max_restarts_must_be_an_integer_of_at_least_0(value):
    with pytest.raises(
        LaunchError, match=r"^max_restarts \(.*\) must be an integer of at least 0\.$"
    ):
        run_with_restarts(
            lambda lost: pytest.fail("planned despite a bad max_restarts"), max_restarts=value
        )


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

    report = run_with_restarts(plan, max_restarts=1, min_workers=2, output=output, stop_timeout=5)

    assert report.exit_code == 0 and report.workers_lost == ("worker:2",)
    assert calls == [0, 0, 1]  # Two attempts of 3 workers (1 restart), then 2 workers.
    assert [a.succeeded for a in report.attempts] == [False, False, True]
    assert [len(a.tasks) for a in report.attempts] == [3, 3, 2]
    text = output.getvalue()
    assert "restarting the cluster (1/1)" in text
    assert (
        "launch: attempt 2 failed (worker:2 exit code 3); its restarts are spent: going "
        "on without it with 2 of 3 workers (--min_workers=2), from the last checkpoint" in text
    )
    assert "[worker:1] 1 of 2" in text
    assert "workers lost: worker:2" in report.summary().splitlines()[0]


def test_min_workers_shrinks_once_per_spent_budget_and_stops_at_the_minimum():
    # worker:0 fails at every size: 3 -> 2 workers, then the launch fails at the minimum.
    plan, calls = _sized_planner(3, failing=lambda i, size: i == 0)

    report = run_with_restarts(
        plan, max_restarts=1, min_workers=2, output=io.StringIO(), stop_timeout=5
    )

    assert report.exit_code == 3 and report.workers_lost == ("worker:0",)
    assert calls == [0, 0, 1, 1]  # Each size gets max_restarts restarts of its own.


def test_without_min_workers_the_launch_ends_when_the_restarts_are_spent():
    plan, calls = _sized_planner(3, failing=lambda i, size: i == 2)

    report = run_with_restarts(plan, max_restarts=0, output=io.StringIO(), stop_timeout=5)

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
        plan, max_restarts=0, min_workers=1, output=io.StringIO(), stop_timeout=5
    )

    assert report.exit_code == 4 and report.workers_lost == ()


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_min_workers_must_be_an_integer_of_at_least_1(value):
    with pytest.raises(LaunchError, match=r"^min_workers \(.*\) must be an integer of at least 1"):
        run_with_restarts(
            lambda lost: pytest.fail("planned despite a bad min_workers"),
            max_restarts=0,
            min_workers=value,
        )
