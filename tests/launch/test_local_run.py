"""Tests for launch.runner.run_local with real child processes (tiny Python scripts)."""

import dataclasses
import io
import os
import signal
import sys
import textwrap
import threading
import time

import pytest

from launch import LaunchError, RestartPolicy, TaskLaunch, run_local

SLEEP = "import time; print('sleeping', flush=True); time.sleep(60)"
# Far below SLEEP's 60 s, so a hang fails; far above the ~0.1 s these take on an idle
# machine, so a loaded CI host does not.
NO_HANG = 20


def _task(name, code, *, is_server=False, env=None):
    task_type, index = name.split(":")
    return TaskLaunch(
        task_type=task_type,
        index=int(index),
        argv=(sys.executable, "-c", textwrap.dedent(code)),
        env={"PYTHONUNBUFFERED": "1", **(env or {})},
        is_server=is_server,
    )


def _run(launches, **kwargs):
    output = io.StringIO()
    start = time.monotonic()
    result = run_local(launches, output=output, poll_interval=0.01, **kwargs)
    return result, output.getvalue(), time.monotonic() - start


def _is_dead(pid, timeout=3.0):
    """Whether `pid` is gone or a zombie (killed, not yet reaped by init)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] in "ZX":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def test_all_succeed_with_prefixed_output():
    launches = [
        _task(f"worker:{i}", f"print('hello {i}'); print('tail', end='')") for i in range(2)
    ]

    result, output, _ = _run(launches)

    assert result.exit_code == 0 and result.succeeded
    assert result.root_cause is None
    assert [task.exit_code for task in result.tasks] == [0, 0]
    lines = output.splitlines()
    for i in range(2):
        assert f"[worker:{i}] hello {i}" in lines
        assert f"[worker:{i}] tail" in lines
    assert result.tasks[1].log_tail == ("hello 1", "tail")
    assert result.summary().splitlines()[0] == "all 2 non-server tasks finished with exit code 0."


def test_failure_stops_the_others():
    launches = [
        _task("worker:0", SLEEP),
        _task("worker:1", "import sys; print('boom'); sys.exit(3)"),
        _task("worker:2", SLEEP),
    ]

    result, output, elapsed = _run(launches, stop_timeout=5)

    assert elapsed < NO_HANG
    assert result.exit_code == 3
    assert result.root_cause.name == "worker:1"
    assert result.root_cause.was_root_cause
    assert "[worker:1] boom" in output
    summary = result.summary()
    assert summary.splitlines()[0] == (
        "task worker:1 failed with exit code 3 (root cause); stopped the other 2 tasks."
    )
    assert "last 1 log line of worker:1:\n  boom" in summary
    for sleeper in (result.tasks[0], result.tasks[2]):
        assert sleeper.stopped
        assert sleeper.exit_code == -signal.SIGTERM
        assert "killed by SIGTERM" in summary
        assert _is_dead(sleeper.pid)


def test_servers_are_stopped_when_the_lead_finishes():
    launches = [
        _task("chief:0", "print('done')"),
        _task("worker:0", SLEEP, is_server=True),
        _task("ps:0", SLEEP, is_server=True),
    ]

    result, output, elapsed = _run(launches)

    assert elapsed < NO_HANG
    assert result.exit_code == 0
    assert "[chief:0] done" in output
    for server in result.tasks[1:]:
        assert server.stopped and server.exit_code == -signal.SIGTERM
        assert _is_dead(server.pid)
    assert result.summary().splitlines()[0] == (
        "all 1 non-server task finished with exit code 0; stopped 2 server tasks."
    )


def test_server_exiting_early_fails_the_launch():
    launches = [_task("chief:0", SLEEP), _task("ps:0", "print('bye')", is_server=True)]

    result, _, elapsed = _run(launches)

    assert elapsed < NO_HANG
    assert result.exit_code == 1
    assert result.root_cause.name == "ps:0"
    assert result.tasks[0].stopped
    assert result.summary().startswith(
        "server task ps:0 exited with exit code 0 before the non-server tasks finished "
        "(root cause); stopped the other 1 task."
    )


# A worker server that counts its starts in a file and dies on the first `deaths` of them;
# then it serves (sleeps) until the launcher stops it.
_DYING_SERVER = """
    import os, sys, time
    path, deaths = sys.argv[1], int(sys.argv[2])
    with open(path, "a") as f:
        f.write("start\\n")
    starts = len(open(path).read().splitlines())
    print(f"start {starts} pid {os.getpid()}", flush=True)
    if starts <= deaths:
        os.kill(os.getpid(), 9)
    time.sleep(60)
    """
# The chief: done once the worker has started 3 times.
_CHIEF_WAITING_FOR_3_STARTS = """
    import os, sys, time
    while not os.path.exists(sys.argv[1]) or open(sys.argv[1]).read().count("start") < 3:
        time.sleep(0.01)
    print(f"chief pid {os.getpid()} done", flush=True)
    """


def _chief_and_dying_worker(count_file, deaths):
    chief = _task("chief:0", _CHIEF_WAITING_FOR_3_STARTS)
    worker = _task("worker:0", _DYING_SERVER, is_server=True)
    return [
        dataclasses.replace(chief, argv=(*chief.argv, str(count_file))),
        dataclasses.replace(worker, argv=(*worker.argv, str(count_file), str(deaths))),
    ]


def test_a_parameter_server_worker_is_restarted_in_place_while_the_chief_runs(tmp_path):
    launches = _chief_and_dying_worker(tmp_path / "starts", deaths=2)

    result, output, elapsed = _run(launches, restarts=RestartPolicy(max_restarts=2))

    assert elapsed < NO_HANG
    assert result.exit_code == 0, output
    assert "[worker:0] launch: worker:0 exited with code -9; restarting it (1/2)" in output
    assert "[worker:0] launch: worker:0 exited with code -9; restarting it (2/2)" in output
    assert output.count("[chief:0] chief pid") == 1  # The chief ran once, untouched.
    assert result.tasks[1].stopped  # The third life served until the chief was done.


def test_a_worker_whose_in_place_restarts_are_spent_fails_the_launch(tmp_path):
    launches = _chief_and_dying_worker(tmp_path / "starts", deaths=3)

    result, output, _ = _run(launches, restarts=RestartPolicy(max_restarts=1))

    assert result.exit_code == 128 + signal.SIGKILL
    assert result.root_cause.name == "worker:0"
    assert "restarting it (1/1)" in output and "(2/1)" not in output
    assert (tmp_path / "starts").read_text().count("start") == 2


def test_without_a_policy_a_dead_worker_server_fails_the_launch(tmp_path):
    result, output, _ = _run(_chief_and_dying_worker(tmp_path / "starts", deaths=1))

    assert result.root_cause.name == "worker:0" and "restarting" not in output


def test_task_ignoring_sigterm_is_killed_after_stop_timeout(tmp_path):
    ready = tmp_path / "ready"
    ignorer = f"""
        import pathlib, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(60)
        """
    failer = f"""
        import os, sys, time
        while not os.path.exists({str(ready)!r}):
            time.sleep(0.01)
        sys.exit(3)
        """
    launches = [_task("worker:0", ignorer), _task("worker:1", failer)]

    result, _, elapsed = _run(launches, stop_timeout=0.3)

    assert 0.3 <= elapsed < NO_HANG
    assert result.exit_code == 3
    assert result.tasks[0].exit_code == -signal.SIGKILL
    assert "killed by SIGKILL" in result.summary()


def test_task_killed_by_signal_is_the_root_cause():
    launches = [
        _task("worker:0", SLEEP),
        _task("worker:1", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"),
    ]

    result, _, _ = _run(launches)

    assert result.exit_code == 128 + signal.SIGKILL
    assert result.summary().startswith("task worker:1 was killed by SIGKILL (root cause)")


def test_command_that_cannot_start_stops_the_started_ones():
    sleeper = _task("worker:0", SLEEP)
    missing = TaskLaunch(task_type="worker", index=1, argv=("/nonexistent/trainer",), env={})
    never = _task("worker:2", "print('never')")

    result, output, elapsed = _run([sleeper, missing, never])

    assert elapsed < NO_HANG
    assert result.exit_code == 127
    assert result.root_cause.name == "worker:1"
    assert result.tasks[0].stopped and _is_dead(result.tasks[0].pid)
    assert result.tasks[2].exit_code is None and result.tasks[2].pid is None
    assert "never" not in output
    summary = result.summary()
    assert "task worker:1 could not start (root cause)" in summary
    assert "could not start '/nonexistent/trainer'" in summary


def test_grandchildren_are_stopped_and_do_not_hang_the_launch():
    code = """
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(child.pid)
        """

    result, output, elapsed = _run([_task("worker:0", code)])

    assert elapsed < NO_HANG
    assert result.exit_code == 0
    grandchild = int(output.split()[-1])
    assert _is_dead(grandchild)


def test_escaped_grandchild_holding_the_output_does_not_hang_the_launch():
    code = """
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                                 start_new_session=True)
        print(child.pid)
        """

    result, output, elapsed = _run([_task("worker:0", code)])
    os.kill(int(output.split()[-1]), signal.SIGKILL)  # It left the task's group.

    assert result.exit_code == 0
    assert elapsed < NO_HANG
    assert result.tasks[0].log_tail[-1] == output.split()[-1]


def test_runs_from_a_non_main_thread():
    results = []
    thread = threading.Thread(
        target=lambda: results.append(_run([_task("worker:0", "print('hi')")]))
    )

    thread.start()
    thread.join(10)

    assert results[0][0].exit_code == 0  # No "signal only works in main thread" error.


def test_signal_handlers_are_restored():
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))

    _run([_task("worker:0", "pass")])

    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_children_get_their_own_env_only():
    environ_before = dict(os.environ)
    code = "import os; print(sorted(k for k in os.environ if k.startswith('TFDIST_')))"

    _, output, _ = _run([_task("worker:0", code, env={"TFDIST_ONLY_HERE": "1"})])

    assert "[worker:0] ['TFDIST_ONLY_HERE']" in output.splitlines()
    assert dict(os.environ) == environ_before


@pytest.mark.parametrize(
    "launches, kwargs, match",
    [
        ([], {}, r"must include at least one non-server task"),
        ([_task("ps:0", "pass", is_server=True)], {}, r"\(\['ps:0'\]\) must include at least one"),
        (
            [_task("worker:0", "pass"), _task("worker:0", "pass")],
            {},
            r"Task names \(\['worker:0', 'worker:0'\]\) must be unique",
        ),
        (
            [_task("worker:0", "pass")],
            {"stop_timeout": 0},
            r"stop_timeout \(0\) must be a positive number of seconds",
        ),
        ([_task("worker:0", "pass")], {"poll_interval": -1}, r"poll_interval \(-1\)"),
        (
            [TaskLaunch(task_type="worker", index=0, argv=(), env={})],
            {},
            r"argv of task worker:0 \(\(\)\) must be a non-empty list of strings",
        ),
        (
            [TaskLaunch(task_type="worker", index=0, argv=("x",), env={"A": 1})],
            {},
            r"env of task worker:0 must be a mapping of str to str",
        ),
    ],
)
def test_run_local_errors(launches, kwargs, match):
    with pytest.raises(LaunchError, match=match):
        run_local(launches, output=io.StringIO(), **kwargs)


def test_a_user_stop_reaches_the_servers_only_after_the_program(tmp_path):
    """SIGTERM to the launcher: the chief stops first, with its servers still up (a
    parameter_server chief saves its checkpoint through them), then the servers."""
    files = {name: str(tmp_path / name) for name in ("chief", "server", "gone", "seen")}
    chief = f"""
        import os, pathlib, signal, sys, time
        def stop(signum, frame):
            time.sleep(0.3)  # Saving.
            up = not os.path.exists({files["gone"]!r})
            pathlib.Path({files["seen"]!r}).write_text(str(up))
            sys.exit(128 + signum)
        signal.signal(signal.SIGTERM, stop)
        pathlib.Path({files["chief"]!r}).touch()
        time.sleep(60)
        """
    server = f"""
        import pathlib, signal, sys, time
        def gone(signum, frame):
            pathlib.Path({files["gone"]!r}).touch()
            sys.exit(0)
        signal.signal(signal.SIGTERM, gone)
        pathlib.Path({files["server"]!r}).touch()
        time.sleep(60)
        """

    def stop_when_ready():
        while not all(os.path.exists(files[name]) for name in ("chief", "server")):
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_ready, daemon=True).start()
    result, _, elapsed = _run([_task("chief:0", chief), _task("ps:0", server, is_server=True)])

    assert elapsed < NO_HANG and result.interrupted_by == "SIGTERM"
    assert open(files["seen"]).read() == "True"  # The server was up while the chief stopped,
    assert os.path.exists(files["gone"])  # and was stopped after it.
