"""Running planned tasks as local processes: spawn, watch, restart in place, stop.

This module owns one attempt of a local launch: `run_local` spawns the `TaskLaunch`es
it is given, prefixes and forwards their output (and logs it: `launch.task_logs`; which
lines are printed once one fails is `launch.quiet_peers`'), watches them, starts a server that
exits again in place as the `RestartPolicy` allows, stops them all when the launch
ends or fails, and returns a `LaunchResult` that names the root cause. Planning the
tasks is `launch.plan`'s job, restarting a whole cluster `launch.launcher`'s, the
policy `launch.restarts`'s, process mechanics `launch._processes`'s and the report
format `launch.result`'s. Each task gets its own env dict; this module never writes
`os.environ`.
"""

import signal
import sys
import time
from collections.abc import Sequence

from launch._processes import (
    PrefixedOutput,
    RunningTask,
    install_signal_handlers,
    signal_group,
    start_task,
    stop_tasks,
)
from launch.command import check_command
from launch.errors import LaunchError
from launch.quiet_peers import PeerFailures
from launch.restarts import RestartPolicy
from launch.result import LaunchResult, TaskOutcome
from launch.streams import TextSink
from launch.task_launch import TaskLaunch, check_env
from launch.task_logs import AttemptLogs

_READER_JOIN_S = 2.0


def _restart(
    task: RunningTask,
    code: int,
    output: PrefixedOutput,
    restarts: RestartPolicy,
    logs: AttemptLogs | None,
) -> RunningTask:
    number = task.restarts + 1
    note = restarts.in_place_note(task.launch, code, number)
    where = "" if logs is None else f"; full log: {logs.path_of(task.launch.name)}"
    output.write_line(task, f"launch: {note}{where}", always_print=True)
    fresh = start_task(task.launch, output)
    fresh.restarts = number
    return fresh


def _watch(
    tasks: list[RunningTask],
    received: list[int],
    poll_interval: float,
    output: PrefixedOutput,
    *,
    restarts: RestartPolicy,
    logs: AttemptLogs | None,
    failures: PeerFailures,
) -> tuple[RunningTask | None, int | None]:
    """Waits until the launch ends; returns (root-cause task, signal received)."""
    while not received:
        for i, task in enumerate(tasks):
            code = task.poll()
            if code is not None and task.restarts < restarts.restarts_in_place(task.launch):
                tasks[i] = _restart(task, code, output, restarts, logs)
        leads = [task.poll() for task in tasks if not task.launch.is_server]
        if all(code == 0 for code in leads):
            return None, None
        root = failures.root_cause()
        if root is not None:
            return root, None
        time.sleep(poll_interval)
    return None, received[0]


def _exit_code(root: RunningTask | None) -> int:
    if root is None:
        return 0
    if root.proc is None:
        return 127 if isinstance(root.start_error, FileNotFoundError) else 126
    code = root.proc.returncode
    return 128 - code if code < 0 else (code or 1)


def run_local(
    launches: Sequence[TaskLaunch],
    *,
    output: TextSink | None = None,
    stop_timeout: float = 10.0,
    poll_interval: float = 0.05,
    restarts: RestartPolicy | None = None,
    logs: AttemptLogs | None = None,
    quiet_peers: bool = True,
) -> LaunchResult:
    """Spawns every task, watches them, and stops them all when the launch ends.

    Every output line of a task is written to `output` prefixed with its name,
    e.g. "[worker:1] step 10", and with `logs` to the task's log file. Once a task
    has failed (the root cause), the others' lines go to their log files only
    (`launch.quiet_peers`), as do their error records about a task restarted in
    place. The launch succeeds when every non-server task
    has exited 0; the servers are then stopped. It fails as soon as any task
    exits non-zero, or a server exits at all before that (unless `restarts`
    starts it again in place: `RestartPolicy.restarts_in_place`); the others are then
    stopped. A SIGINT or SIGTERM the launcher gets (from the main thread only)
    is forwarded to every task, the servers last (once the others have exited, so a
    parameter_server chief can still save). Stopping sends a signal (SIGTERM, or the one
    received) to each task's process group and SIGKILL after `stop_timeout`.

    Args:
        launches: The tasks, e.g. from `plan_local_launch`; at least one must
            not be a server.
        output: Where the tasks' prefixed output goes; None for the current
            `sys.stdout`.
        stop_timeout: Seconds a stopped task gets to exit before SIGKILL.
        poll_interval: Seconds between checks of the tasks.
        restarts: The policy whose in-place restarts apply (a parameter_server
            worker server that exits is started again); None restarts nothing.
            Restarting the whole cluster is `launch.launcher.run_launch`'s.
        logs: The attempt's log files, which get every line of every task; None
            writes none. The caller closes them.
        quiet_peers: With `logs`, whether the lines of a failed task's peers are
            left out of `output` (they are in the log files); without `logs`, every
            line is printed.

    Returns:
        The `LaunchResult`; its `summary()` reports each task and the root cause.

    Raises:
        LaunchError: If the arguments are invalid; no task is started then.
    """
    launches = list(launches)
    _check_arguments(launches, stop_timeout=stop_timeout, poll_interval=poll_interval)
    tasks: list[RunningTask] = []
    policy = RestartPolicy() if restarts is None else restarts
    failures = PeerFailures(tasks, policy, quiet=quiet_peers and logs is not None)
    prefixed = PrefixedOutput(
        sys.stdout if output is None else output, logs=logs, prints=failures.prints
    )
    received: list[int] = []
    restore = install_signal_handlers(received)
    root: RunningTask | None = None
    interrupt: int | None = None
    try:
        for launch in launches:
            tasks.append(start_task(launch, prefixed))
            if tasks[-1].proc is None:
                root = tasks[-1]
                break
        if root is None:
            root, interrupt = _watch(
                tasks,
                received,
                poll_interval,
                prefixed,
                restarts=policy,
                logs=logs,
                failures=failures,
            )
        stop_tasks(
            tasks,
            interrupt or signal.SIGTERM,
            stop_timeout,
            received,
            poll_interval,
            servers_last=interrupt is not None,
        )
    except BaseException:
        for task in tasks:
            signal_group(task, signal.SIGKILL)
        raise
    finally:
        restore()
    deadline = time.monotonic() + _READER_JOIN_S
    for task in tasks:
        if task.reader is not None:
            task.reader.join(max(0.0, deadline - time.monotonic()))
    return _result(launches, tasks, prefixed, root=root, interrupt=interrupt)


def _check_arguments(
    launches: list[TaskLaunch], *, stop_timeout: float, poll_interval: float
) -> None:
    names = [launch.name for launch in launches]
    if not launches or all(launch.is_server for launch in launches):
        raise LaunchError(
            f"launches ({names}) must include at least one non-server task, whose "
            "exit ends the launch."
        )
    if len(set(names)) != len(names):
        raise LaunchError(f"Task names ({names}) must be unique.")
    for launch in launches:
        check_command(f"argv of task {launch.name}", launch.argv)
        check_env(f"env of task {launch.name}", launch.env)
    for name, value in (("stop_timeout", stop_timeout), ("poll_interval", poll_interval)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise LaunchError(f"{name} ({value!r}) must be a positive number of seconds.")


def _result(
    launches: list[TaskLaunch],
    tasks: list[RunningTask],
    output: PrefixedOutput,
    *,
    root: RunningTask | None,
    interrupt: int | None,
) -> LaunchResult:
    """The launch's report: one outcome per launch (one never started has no pid)."""
    outcomes = {
        task.launch.name: TaskOutcome(
            name=task.launch.name,
            exit_code=None if task.proc is None else task.proc.returncode,
            log_tail=output.tail_of(task),
            was_root_cause=task is root,
            pid=None if task.proc is None else task.proc.pid,
            is_server=task.launch.is_server,
            stopped=task.stopped,
        )
        for task in tasks
    }
    ordered = tuple(
        outcomes.get(launch.name)
        or TaskOutcome(name=launch.name, exit_code=None, is_server=launch.is_server)
        for launch in launches
    )
    return LaunchResult(
        exit_code=128 + interrupt if interrupt else _exit_code(root),
        tasks=ordered,
        root_cause=outcomes[root.launch.name] if root else None,
        interrupted_by=signal.Signals(interrupt).name if interrupt else None,
    )
