"""launch.restarts.RestartPolicy: every restart decision of a launch, without processes.

In place (a parameter_server worker server), the whole cluster, or going on with fewer
workers: the results are built by hand, so each rule is seen on its own.
"""

import pytest

from launch import LaunchError, LaunchResult, RestartPolicy, TaskLaunch, TaskOutcome


def _failed(name="worker:2", exit_code=-9, log_tail=()):
    cause = TaskOutcome(
        name=name, exit_code=exit_code, pid=1, was_root_cause=True, log_tail=tuple(log_tail)
    )
    return LaunchResult(exit_code=137, tasks=(cause,), root_cause=cause)


def _launch(task_type, *, is_server):
    return TaskLaunch(task_type=task_type, index=0, argv=["x"], env={}, is_server=is_server)


@pytest.mark.parametrize(
    "task_type, is_server, expected",
    [
        ("worker", True, 2),  # A parameter_server worker: restarted in place.
        ("worker", False, 0),  # A multi_worker worker: its exit ends the attempt.
        ("ps", True, 0),
        ("chief", False, 0),
        ("data_worker", True, 0),  # A tf.data service worker is no TensorFlow worker.
    ],
)
def test_only_a_parameter_server_worker_is_restarted_in_place(task_type, is_server, expected):
    policy = RestartPolicy(max_restarts=2)

    assert policy.restarts_in_place(_launch(task_type, is_server=is_server)) == expected
    assert RestartPolicy().restarts_in_place(_launch(task_type, is_server=is_server)) == 0


def test_the_in_place_note_counts_the_restarts():
    note = RestartPolicy(max_restarts=2).in_place_note(_launch("worker", is_server=True), -9, 1)

    assert note == "worker:0 exited with code -9; restarting it (1/2)"


def test_a_failure_restarts_the_cluster_until_the_restarts_are_spent():
    policy = RestartPolicy(max_restarts=2)

    first = policy.after(_failed(), attempt=1, restarts=0, workers=3)
    last = policy.after(_failed(), attempt=3, restarts=2, workers=3)

    assert first.restart and first.drop is None
    assert (
        first.note == "attempt 1 failed (worker:2 killed by SIGKILL); restarting the cluster (1/2)"
    )
    assert not last.restart
    assert last.note == (
        "attempt 3 failed (worker:2 killed by SIGKILL); giving up: the restarts are spent (2/2)"
    )


def test_an_error_exit_names_the_tasks_last_line_and_a_kill_or_usage_error_does_not():
    policy = RestartPolicy(max_restarts=1)
    tail = [
        "Traceback (most recent call last):",
        "ValueError: " + "x" * 300,
        "I0000 00:00:1796501060.554227    3450 port.cc:153] oneDNN custom operations are on.",
        "",
    ]

    errored = policy.after(_failed("chief:0", 1, tail), attempt=1, restarts=0, workers=2)
    killed = policy.after(_failed(log_tail=tail), attempt=1, restarts=0, workers=2)
    usage = policy.after(_failed("chief:0", 2, tail), attempt=1, restarts=0, workers=2)

    said = "ValueError: " + "x" * 185 + "..."
    assert errored.note == (
        f'attempt 1 failed (chief:0 exit code 1: "{said}"); restarting the cluster (1/1)'
    )
    assert killed.note == (
        "attempt 1 failed (worker:2 killed by SIGKILL); restarting the cluster (1/1)"
    )
    # Exit 2, a usage error: its one line was the task's last, printed just before.
    assert usage.note == "attempt 1 failed (chief:0 exit code 2); restarting the cluster (1/1)"


def test_success_and_an_interrupt_end_the_launch():
    policy = RestartPolicy(max_restarts=3, min_workers=1)
    interrupted = LaunchResult(exit_code=130, tasks=(), interrupted_by="SIGINT")

    succeeded = LaunchResult(exit_code=0, tasks=())

    assert not policy.after(succeeded, attempt=1, restarts=0, workers=2).restart
    assert not policy.after(interrupted, attempt=1, restarts=0, workers=2).restart


def test_min_workers_drops_the_worker_whose_restarts_are_spent():
    decision = RestartPolicy(max_restarts=1, min_workers=2).after(
        _failed(exit_code=3), attempt=2, restarts=1, workers=3
    )

    assert decision.restart and decision.drop == "worker:2"
    assert decision.note == (
        "attempt 2 failed (worker:2 exit code 3); its restarts are spent: going on without it "
        "with 2 of 3 workers (--min_workers=2), from the last checkpoint"
    )


@pytest.mark.parametrize(
    "cause, workers",
    [("worker:1", 2), ("chief:0", 3), ("dispatcher:0", 3)],
    ids=["at the minimum", "the chief", "not a TensorFlow task"],
)
def test_min_workers_drops_only_a_worker_above_the_minimum(cause, workers):
    policy = RestartPolicy(max_restarts=0, min_workers=2)

    assert not policy.after(_failed(cause), attempt=1, restarts=0, workers=workers).restart


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_restarts=-1), r"^max_restarts \(-1\) must be an integer of at least 0\.$"),
        (dict(max_restarts=1.5), r"^max_restarts \(1\.5\) must be an integer of at least 0\.$"),
        (dict(max_restarts=True), r"^max_restarts \(True\) must be an integer of at least 0\.$"),
        (dict(max_restarts="2"), r"^max_restarts \('2'\) must be an integer of at least 0\.$"),
        (
            dict(min_workers=0),
            r"^min_workers \(0\) must be an integer of at least 1; pass --min_workers=1\.$",
        ),
        (dict(min_workers=True), r"^min_workers \(True\) must be an integer of at least 1"),
    ],
)
def test_counts_are_checked_when_the_policy_is_made(kwargs, match):
    with pytest.raises(LaunchError, match=match):
        RestartPolicy(**kwargs)


@pytest.mark.parametrize(
    "where, match",
    [
        (
            dict(strategy="multi_worker", num_workers=2, planned_here=True),
            r"^min_workers \(3\) must be at most num_workers \(2\); pass --min_workers=2 or "
            r"fewer\.$",
        ),
        (
            dict(strategy="parameter_server", num_workers=4, planned_here=True),
            r"^min_workers \(3\) is for strategy 'multi_worker', not 'parameter_server': a "
            r"parameter_server worker is restarted in place while the others go on; drop "
            r"--min_workers\.$",
        ),
        (
            dict(strategy="multi_worker", num_workers=4, planned_here=False),
            r"^min_workers \(3\) needs a cluster planned here",
        ),
    ],
)
def test_min_workers_must_fit_the_launch(where, match):
    with pytest.raises(LaunchError, match=match):
        RestartPolicy(min_workers=3).check_fits(**where)


def test_without_min_workers_every_launch_fits():
    RestartPolicy(max_restarts=2).check_fits(
        strategy="parameter_server", num_workers=1, planned_here=False
    )
