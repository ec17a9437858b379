"""What a finished local launch reports: each task's outcome and the root cause.

This module owns the result types of a launch and their human-readable reports: a
`LaunchResult` per attempt (`launch.runner.run_local`), and a `RestartReport` of every
attempt of a launch that may restart (`launch.launcher.run_launch`). It starts and
inspects no process.
"""

import dataclasses
import signal

from launch.noise import is_noise

_USAGE_ERROR = 2  # The exit code of a command's own one-line usage error.


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@dataclasses.dataclass(frozen=True)
class TaskOutcome:
    """How one task of a launch ended.

    Attributes:
        name: The task's name, e.g. "worker:1".
        exit_code: The process's exit status as `subprocess.Popen` reports it
            (negative: killed by that signal), or None if the task never
            started or could not be reaped.
        log_tail: The last lines the task wrote (stdout and stderr merged), or
            why it did not start.
        was_root_cause: Whether this task's exit ended the launch.
        pid: The process id, or None if the task never started.
        is_server: Whether the task was a server (stopped when the launch ends).
        stopped: Whether the launcher stopped the task, which was still running.
    """

    name: str
    exit_code: int | None
    log_tail: tuple[str, ...] = ()
    was_root_cause: bool = False
    pid: int | None = None
    is_server: bool = False
    stopped: bool = False

    def describe(self) -> str:
        """Returns how the task ended, e.g. "exit code 3" or "killed by SIGKILL"."""
        if self.exit_code is None:
            return "not started" if self.pid is None else "did not exit (could not be reaped)"
        if self.exit_code < 0:
            return f"killed by {_signal_name(-self.exit_code)}"
        return f"exit code {self.exit_code}"

    def last_words(self, limit: int = 200) -> str | None:
        """The last line the task wrote that is not TensorFlow's start-up noise, cut to
        `limit` characters, when it failed with an error code (a traceback's last line);
        None when it was killed, never started, wrote nothing, or exited with 2, a usage
        error whose one line (tfdist's, absl's, argparse's) has just been printed."""
        if self.exit_code is None or self.exit_code <= 0 or self.exit_code == _USAGE_ERROR:
            return None
        lines = [line.strip() for line in self.log_tail if line.strip() and not is_noise(line)]
        if not lines:
            return None
        last = lines[-1]
        return last if len(last) <= limit else last[: limit - 3] + "..."


@dataclasses.dataclass(frozen=True)
class LaunchResult:
    """The result of a launch: its exit code and every task's outcome.

    Attributes:
        exit_code: 0 on success. Otherwise the root cause's exit code (128 +
            signal number if it was killed by a signal, 1 if a server exited
            with 0 too early, 127/126 if it could not start), or 128 + signal
            number if the launcher itself was interrupted.
        tasks: One outcome per task, in launch order.
        root_cause: The task whose exit ended the launch, or None.
        interrupted_by: The name of the signal (e.g. "SIGINT") that stopped the
            launch, or None.
    """

    exit_code: int
    tasks: tuple[TaskOutcome, ...]
    root_cause: TaskOutcome | None = None
    interrupted_by: str | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the launch succeeded (exit code 0)."""
        return self.exit_code == 0

    def _headline(self) -> str:
        stopped = sum(task.stopped for task in self.tasks)
        if self.interrupted_by is not None:
            return (
                f"launch interrupted by {self.interrupted_by}; "
                f"stopped {_plural(stopped, 'running task')}."
            )
        cause = self.root_cause
        if cause is None:
            done = [task for task in self.tasks if not task.is_server]
            line = f"all {_plural(len(done), 'non-server task')} finished with exit code 0"
            return f"{line}; stopped {_plural(stopped, 'server task')}." if stopped else f"{line}."
        if cause.pid is None:
            what = f"task {cause.name} could not start"
        elif cause.is_server and cause.exit_code == 0:
            what = (
                f"server task {cause.name} exited with exit code 0 before the "
                "non-server tasks finished"
            )
        elif cause.exit_code is not None and cause.exit_code < 0:
            what = f"task {cause.name} was {cause.describe()}"
        else:
            what = f"task {cause.name} failed with {cause.describe()}"
        others = (
            f"stopped the other {_plural(stopped, 'task')}"
            if stopped
            else "no other task was running"
        )
        return f"{what} (root cause); {others}."

    def summary(self) -> str:
        """Returns a multi-line report of the launch.

        The first line says how the launch ended; then one line per task with
        its pid and exit; then the root cause's last log lines.
        """
        lines = [self._headline()]
        width = max((len(task.name) for task in self.tasks), default=0)
        for task in self.tasks:
            notes = [
                note
                for flag, note in (
                    (task.was_root_cause, "root cause"),
                    (task.stopped, "stopped by launcher"),
                    (task.is_server, "server"),
                )
                if flag
            ]
            pid = f"pid {task.pid}" if task.pid is not None else "no pid"
            extra = f"  ({', '.join(notes)})" if notes else ""
            lines.append(f"  {task.name:<{width}}  {pid:<10}  {task.describe()}{extra}")
        if self.root_cause is not None:
            # TensorFlow's start-up lines say nothing about why the task failed.
            tail = [line for line in self.root_cause.log_tail if not is_noise(line)]
            if tail:
                lines.append(f"last {_plural(len(tail), 'log line')} of {self.root_cause.name}:")
                lines.extend(f"  {line}" for line in tail)
            else:
                lines.append(f"{self.root_cause.name} wrote no output.")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class RestartReport:
    """Every attempt of a launch, in order; the last one decides the exit code.

    Attributes:
        attempts: The attempts' results, in order.
        workers_lost: The workers dropped under `min_workers`, in order (their names in
            the cluster they failed in, e.g. "worker:2").
    """

    attempts: tuple[LaunchResult, ...]
    workers_lost: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        """The last attempt's exit code."""
        return self.attempts[-1].exit_code

    @property
    def restarts(self) -> int:
        """The restarts of the whole cluster (attempts after the first)."""
        return len(self.attempts) - 1

    def summary(self) -> str:
        """Each failed attempt's root cause (task, exit code, last log lines), then the last."""
        failures = [a for a in self.attempts if not a.succeeded]
        lines = [
            f"{len(failures)} of {len(self.attempts)} attempt(s) failed "
            f"({self.restarts} restart(s)"
            + (f"; workers lost: {', '.join(self.workers_lost)}" if self.workers_lost else "")
            + "):"
        ]
        for number, attempt in enumerate(self.attempts, 1):
            if attempt.succeeded:
                lines.append(f"attempt {number}: succeeded")
                continue
            cause = attempt.root_cause
            what = f"{cause.name} {cause.describe()}" if cause else attempt.interrupted_by
            lines.append(f"attempt {number}: {what}")
            if cause:
                lines.extend(f"    {line}" for line in cause.log_tail[-8:])
        return "\n".join(lines)
