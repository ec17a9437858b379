"""Process mechanics of a local launch: spawn, read output, signal, stop.

This private module owns what `launch.runner.run_local` does to processes: each
task is spawned in its own session (so its whole process group can be
signalled), a reader thread prefixes its output lines (and writes them to the
task's log file), and stopping signals every group, waits, then SIGKILLs. Deciding
when a launch ends, what it reports and which lines are printed is
`launch.runner`'s job.
"""

import collections
import dataclasses
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import IO

from launch.streams import TextSink
from launch.task_launch import TaskLaunch
from launch.task_logs import AttemptLogs

# What `signal.signal` returns: the handler it replaced.
_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None
LOG_TAIL_LINES = 50
_REAP_TIMEOUT_S = 5.0


@dataclasses.dataclass
class RunningTask:
    """A task while it runs: the blueprint plus its process and output."""

    launch: TaskLaunch
    tail: collections.deque[str]
    proc: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None
    start_error: OSError | None = None
    stopped: bool = False
    restarts: int = 0

    def poll(self) -> int | None:
        """The process's exit status, or None while it runs (or if it never started)."""
        return None if self.proc is None else self.proc.poll()


class PrefixedOutput:
    """Writes whole lines from many threads to one stream, each with a prefix.

    It also keeps each task's last lines and, with `logs`, writes every line to the
    task's log file; one lock guards all three.

    Args:
        output: The stream the printed lines go to.
        logs: The attempt's log files, which get every line; None writes none.
        prints: Decides whether a task's line (without its prefix) is printed on
            `output`, e.g. `launch.quiet_peers.PeerFailures.prints`; default: every line.
    """

    def __init__(
        self,
        output: TextSink,
        *,
        logs: AttemptLogs | None = None,
        prints: Callable[[RunningTask, str], bool] = lambda task, line: True,
    ):
        self._output = output
        self._logs = logs
        self._prints = prints
        self._lock = threading.Lock()

    def tail_of(self, task: RunningTask) -> tuple[str, ...]:
        """Returns the task's last lines (safe while its reader still runs)."""
        with self._lock:
            return tuple(task.tail)

    def write_line(self, task: RunningTask, line: str, *, always_print: bool = False) -> None:
        """Keeps `line` in the task's tail and log file; prints it with the task's prefix.

        Args:
            task: Whose line it is.
            line: The line, without its newline.
            always_print: Print it whatever `prints` says (the launcher's own notes).
        """
        name = task.launch.name
        printed = always_print or self._prints(task, line)
        with self._lock:
            task.tail.append(line)
            if self._logs is not None:
                self._logs.write_line(name, line)
            if not printed:
                return
            try:
                self._output.write(f"[{name}] {line}\n")
                self._output.flush()
            except (OSError, ValueError):  # A closed output must not stop the task.
                pass


def _read_output(task: RunningTask, stream: IO[bytes], output: PrefixedOutput) -> None:
    with stream:
        for raw in stream:
            output.write_line(task, raw.decode("utf-8", errors="replace").rstrip("\r\n"))


def start_task(launch: TaskLaunch, output: PrefixedOutput) -> RunningTask:
    """Spawns `launch` in a new session with its env; starts its output reader.

    A task that cannot be spawned is returned with `proc` None, `start_error`
    set, and the reason as its only log line.
    """
    task = RunningTask(launch=launch, tail=collections.deque(maxlen=LOG_TAIL_LINES))
    try:
        task.proc = subprocess.Popen(
            list(launch.argv),
            env=dict(launch.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as error:
        task.start_error = error
        task.tail.append(f"could not start {launch.argv[0]!r}: {error}")
        return task
    assert task.proc.stdout is not None  # Popen made it: stdout=PIPE.
    task.reader = threading.Thread(
        target=_read_output,
        args=(task, task.proc.stdout, output),
        name=f"launch-{launch.name}",
        daemon=True,
    )
    task.reader.start()
    return task


def signal_group(task: RunningTask, signum: int) -> None:
    """Sends `signum` to the task's process group, if any member is left."""
    if task.proc is not None:
        try:
            os.killpg(task.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def stop_tasks(
    tasks: list[RunningTask],
    signum: int,
    timeout: float,
    received: list[int],
    poll_interval: float,
    *,
    servers_last: bool = False,
) -> None:
    """Signals every task's group, waits up to `timeout`, then kills them all.

    With `servers_last` (the user stopped the launch), the tasks that run the program are
    signalled first and the servers only once those have exited: a parameter_server
    chief saves its checkpoint through the ps and workers it stops last. Tasks still
    running are marked `stopped`. A new signal appended to `received` while waiting cuts
    the wait short. Returns once every task is reaped (or could not be within a few
    seconds of SIGKILL).
    """
    deadline, seen = time.monotonic() + timeout, len(received)
    groups = [tasks]
    if servers_last:
        groups = [
            [t for t in tasks if not t.launch.is_server],
            [t for t in tasks if t.launch.is_server],
        ]
    for group in groups:
        for task in group:
            if task.proc is not None and task.proc.poll() is None:
                task.stopped = True
            signal_group(task, signum)  # Also reaches what an exited task left behind.
        while (
            time.monotonic() < deadline
            and len(received) == seen
            and any(t.proc is not None and t.proc.poll() is None for t in group)
        ):
            time.sleep(min(poll_interval, 0.02))
    for task in tasks:
        signal_group(task, signal.SIGKILL)
    for task in tasks:
        if task.proc is not None:
            try:
                task.proc.wait(timeout=_REAP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass


def install_signal_handlers(received: list[int]) -> Callable[[], None]:
    """Appends each SIGINT/SIGTERM to `received`; returns a function that restores.

    Handlers can only be installed from the main thread; elsewhere this does
    nothing and the launcher is not told of signals.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, _Handler] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda num, _: received.append(num))

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    return restore
