"""Restarts: run a local cluster again from scratch when one of its tasks fails.

Owns the restart policy of a local launch (like torchrun's `--max-restarts`, for
TF_CONFIG clusters): when any task fails, `run_local` has already stopped every
task; this module plans the cluster anew (fresh ports) and starts it again, at most
`max_restarts` times. The trainer resumes from its latest checkpoint, so a restart
loses only the steps since then. A launch stopped by the user (SIGINT/SIGTERM to the
launcher) is not restarted. Standard library only.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Callable, Sequence, TextIO

from launch.errors import LaunchError
from launch.local import TaskLaunch, run_local
from launch.result import LaunchResult


@dataclasses.dataclass(frozen=True)
class RestartReport:
    """Every attempt of a launch, in order; the last one decides the exit code."""

    attempts: tuple[LaunchResult, ...]

    @property
    def exit_code(self) -> int:
        return self.attempts[-1].exit_code

    @property
    def restarts(self) -> int:
        return len(self.attempts) - 1

    def summary(self) -> str:
        """Each failed attempt's root cause (task, exit code, last log lines), then the last."""
        failures = [a for a in self.attempts if not a.succeeded]
        lines = [f"{len(failures)} of {len(self.attempts)} attempt(s) failed "
                 f"({self.restarts} restart(s)):"]
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


def run_with_restarts(plan: Callable[[], Sequence[TaskLaunch]], *, max_restarts: int,
                      output: TextIO | None = None, stop_timeout: float = 10.0,
                      run: Callable[..., LaunchResult] = run_local) -> RestartReport:
    """Runs `plan()`'s tasks; after a failure plans and runs them again, `max_restarts` times.

    Args:
        plan: Returns a fresh set of launches (new ports) for each attempt.
        max_restarts: Restarts allowed after the first attempt; 0 means none.
        output: Where the tasks' output and the restart notes go (`sys.stdout`).
        stop_timeout: Passed to `run_local`.
        run: The runner, `run_local` unless a test replaces it.
    """
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise LaunchError(f"max_restarts ({max_restarts!r}) must be an integer of at least 0.")
    attempts = []
    while True:
        result = run(plan(), output=output, stop_timeout=stop_timeout)
        attempts.append(result)
        if result.succeeded or result.interrupted_by or len(attempts) > max_restarts:
            return RestartReport(tuple(attempts))
        cause = result.root_cause
        note = (f"launch: attempt {len(attempts)} failed ({cause.name} {cause.describe()}); "
                f"restarting the cluster ({len(attempts)}/{max_restarts})")
        print(note, file=output or sys.stdout, flush=True)
