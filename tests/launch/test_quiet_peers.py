"""`launch.quiet_peers` through `run_local`, with real child processes (tiny Python scripts).

Once a task fails, its peers' output goes to their log files only; the root cause's own
lines are still printed. A peer restarted in place only silences the others' error
records about it.
"""

import io
import sys
import textwrap

from launch import RestartPolicy, TaskLaunch, run_local
from launch.task_logs import LaunchLogs


def _task(name, code, *, is_server=False):
    task_type, index = name.split(":")
    return TaskLaunch(
        task_type=task_type,
        index=int(index),
        argv=(sys.executable, "-c", textwrap.dedent(code)),
        env={"PYTHONUNBUFFERED": "1"},
        is_server=is_server,
    )


def _peer_and_root_cause(ready):
    """worker:0 prints a traceback when stopped; worker:1 fails once worker:0 is up."""
    survivor = _task(
        "worker:0",
        f"""
        import pathlib, signal, sys, time
        def stopped(*_):
            print('Traceback (most recent call last):')
            print('UnavailableError: Collective ops is aborted by: Connection reset by peer')
            sys.exit(1)
        signal.signal(signal.SIGTERM, stopped)
        print('worker 0 training')
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(60)
        """,
    )
    root_cause = _task(
        "worker:1",
        f"""
        import pathlib, sys, time
        while not pathlib.Path({str(ready)!r}).exists():
            time.sleep(0.01)
        print('worker 1 out of memory')
        sys.exit(3)
        """,
    )
    return [survivor, root_cause]


def _run(launches, logs, **kwargs):
    output = io.StringIO()
    with logs as attempt:
        result = run_local(launches, output=output, poll_interval=0.01, logs=attempt, **kwargs)
    return result, output.getvalue()


def test_the_peers_of_a_failed_task_go_to_their_log_files_only(tmp_path):
    logs = LaunchLogs(tmp_path).attempt(1)

    result, output = _run(_peer_and_root_cause(tmp_path / "ready"), logs)

    assert result.root_cause.name == "worker:1" and result.exit_code == 3
    assert "[worker:1] worker 1 out of memory" in output  # The root cause's own lines.
    assert "Traceback" not in output and "UnavailableError" not in output
    survivor = logs.path_of("worker:0").read_text()
    assert survivor.splitlines() == [
        "worker 0 training",
        "Traceback (most recent call last):",
        "UnavailableError: Collective ops is aborted by: Connection reset by peer",
    ]
    assert logs.path_of("worker:1").read_text() == "worker 1 out of memory\n"
    stopped = next(task for task in result.tasks if task.name == "worker:0")
    assert "Traceback (most recent call last):" in stopped.log_tail  # Kept in the report.


def test_quiet_peers_false_prints_every_line(tmp_path):
    logs = LaunchLogs(tmp_path).attempt(1)

    _, output = _run(_peer_and_root_cause(tmp_path / "ready"), logs, quiet_peers=False)

    assert "[worker:0] Traceback (most recent call last):" in output
    assert "Traceback" in logs.path_of("worker:0").read_text()


def test_without_log_files_every_line_is_printed(tmp_path):
    output = io.StringIO()

    run_local(_peer_and_root_cause(tmp_path / "ready"), output=output, poll_interval=0.01)

    assert "[worker:0] Traceback (most recent call last):" in output.getvalue()


def test_a_peer_restarted_in_place_silences_only_the_errors_about_it(tmp_path):
    # worker:0 (a server) dies at its first start; the chief then logs an error record
    # about it, with gRPC's continuation line, between lines of its own.
    died = tmp_path / "died"
    server = _task(
        "worker:0",
        f"""
        import os, pathlib, time
        if not pathlib.Path({str(died)!r}).exists():
            print('first start')
            pathlib.Path({str(died)!r}).touch()
            os._exit(1)
        print('serving again')
        time.sleep(60)
        """,
        is_server=True,
    )
    chief = _task(
        "chief:0",
        f"""
        import pathlib, time
        print('Epoch 1/2')
        while not pathlib.Path({str(died)!r}).exists():
            time.sleep(0.01)
        time.sleep(0.3)
        print('E0000 00:00:1.5   6864 context.cc:873] Failed to reach /job:worker/replica:0/task:0')
        print('This could happen if the remote target has been disconnected from the client.')
        print('Epoch 2/2')
        print('E0000 00:00:1.6   6864 chief.cc:1] An error of the chief')
        """,
    )
    logs = LaunchLogs(tmp_path / "logs").attempt(1)

    result, output = _run([chief, server], logs, restarts=RestartPolicy(max_restarts=1))

    assert result.succeeded, output
    assert "[chief:0] Epoch 1/2" in output and "[chief:0] Epoch 2/2" in output
    assert "[chief:0] E0000 00:00:1.6   6864 chief.cc:1] An error of the chief" in output
    assert "task:0" not in output.replace("[worker:0]", "")
    assert "remote target" not in output
    note = "[worker:0] launch: worker:0 exited with code 1; restarting it (1/1); full log: "
    assert f"{note}{logs.path_of('worker:0')}" in output
    chief_log = logs.path_of("chief:0").read_text()
    assert "Failed to reach /job:worker/replica:0/task:0" in chief_log
    assert "remote target has been disconnected" in chief_log
    assert logs.path_of("worker:0").read_text().splitlines()[:2] == [
        "first start",
        "launch: worker:0 exited with code 1; restarting it (1/1); "
        f"full log: {logs.path_of('worker:0')}",
    ]


def test_a_peer_error_printed_before_the_launcher_polls_is_caught_and_not_the_root(tmp_path):
    # The launcher polls every 2 s; worker:0 prints its error and exits as soon as
    # worker:1 is dead (a zombie), long before that poll sees both gone.
    pid_file = tmp_path / "pid"
    root_cause = _task(
        "worker:1",
        f"import os, pathlib; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); "
        "os._exit(3)",
    )
    peer = _task(
        "worker:0",
        f"""
        import pathlib, sys, time
        def dead(pid):
            try:
                stat = pathlib.Path(f'/proc/{{pid}}/stat').read_text()
            except FileNotFoundError:
                return True
            return stat.rsplit(')', 1)[1].split()[0] in 'ZX'  # A zombie: dead, not reaped.
        pid_file = pathlib.Path({str(pid_file)!r})
        while not pid_file.exists() or not pid_file.read_text() or not dead(pid_file.read_text()):
            time.sleep(0.01)
        print('Traceback (most recent call last):')
        sys.exit(1)
        """,
    )
    logs = LaunchLogs(tmp_path / "logs").attempt(1)
    output = io.StringIO()

    with logs:
        result = run_local([peer, root_cause], output=output, poll_interval=2.0, logs=logs)

    assert result.root_cause.name == "worker:1", result.summary()
    assert "Traceback" not in output.getvalue()
    assert "Traceback" in logs.path_of("worker:0").read_text()


LOST = "E0000 00:00:1.5   6167 ring_alg.cc:291] Aborting RingReduce: Connection reset by peer"


def _logs_loss_then(tmp_path, root_cause_exit):
    """worker:0 logs a lost connection as worker:1 starts exiting (0.3 s later)."""
    exiting = tmp_path / "exiting"
    peer = _task(
        "worker:0",
        f"""
        import pathlib, time
        while not pathlib.Path({str(exiting)!r}).exists():
            time.sleep(0.01)
        print({LOST!r}, flush=True)
        time.sleep(60)
        """,
    )
    other = _task(
        "worker:1",
        f"import pathlib, sys, time; pathlib.Path({str(exiting)!r}).touch(); time.sleep(0.3); "
        f"{root_cause_exit}",
    )
    return [peer, other]


def test_a_lost_connection_logged_before_the_peer_is_reaped_waits_for_it(tmp_path):
    logs = LaunchLogs(tmp_path / "logs").attempt(1)

    result, output = _run(_logs_loss_then(tmp_path, "sys.exit(3)"), logs)

    assert result.root_cause.name == "worker:1"
    assert "Connection reset" not in output
    assert logs.path_of("worker:0").read_text() == LOST + "\n"


def test_a_lost_connection_is_printed_when_no_peer_fails_within_the_grace(tmp_path):
    logs = LaunchLogs(tmp_path / "logs").attempt(1)

    # worker:1 stays up long after the grace, then fails.
    _, output = _run(_logs_loss_then(tmp_path, "time.sleep(2); sys.exit(3)"), logs)

    assert f"[worker:0] {LOST}" in output
