"""Restarts: run a local cluster again from scratch when one of its tasks fails.

Owns the restart policy of a local launch (like torchrun's `--max-restarts`, for
TF_CONFIG clusters): when any task fails, `run_local` has already stopped every
task; this module plans the cluster anew (fresh ports) and starts it again, at most
`max_restarts` times. The trainer resumes from its latest checkpoint, so a restart
loses only the steps since then. A launch stopped by the user (SIGINT/SIGTERM to the
launcher) is not restarted.

With `min_workers` (a `multi_worker` cluster planned here), a worker that cannot come
back does not end the launch: when the restarts are spent and the last failure was a
worker's, that worker is dropped, the cluster is planned again with one worker fewer
(while at least `min_workers` remain), and the smaller cluster gets `max_restarts`
restarts of its own, as torchrun's elastic launch forms a smaller group when a node
leaves. Standard library only.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from launch.errors import check_count
from launch.result import LaunchResult
from launch.runner import run_local
from launch.task_launch import TaskLaunch


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
        return self.attempts[-1].exit_code

    @property
    def restarts(self) -> int:
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


def _num_workers(launches: Sequence[TaskLaunch]) -> int:
    return sum(launch.task_type == "worker" for launch in launches)


def _launch_of(launches: Sequence[TaskLaunch], name: str) -> TaskLaunch:
    return next(launch for launch in launches if launch.name == name)


def _can_drop(result: LaunchResult, workers: int, min_workers: int | None) -> bool:
    """Whether the failed attempt's root cause is a worker the launch may go on without."""
    cause = result.root_cause
    return (
        min_workers is not None
        and cause is not None
        and cause.name.startswith("worker:")
        and workers - 1 >= min_workers
    )


def run_with_restarts(
    plan: Callable[[tuple[TaskLaunch, ...]], Sequence[TaskLaunch]],
    *,
    max_restarts: int,
    min_workers: int | None = None,
    output: TextIO | None = None,
    stop_timeout: float = 10.0,
    run: Callable[..., LaunchResult] = run_local,
) -> RestartReport:
    """Runs `plan(())`'s tasks; after a failure plans and runs them again, `max_restarts` times.

    Args:
        plan: Returns a fresh set of launches (new ports) for each attempt, given the
            workers lost so far (their launches, e.g. to leave their GPUs out):
            `plan(lost)` has `len(lost)` workers fewer than `plan(())`.
        max_restarts: Restarts allowed after the first attempt (with `min_workers`: of
            each cluster size); 0 means none.
        min_workers: The fewest workers to go on with when a worker's restarts are spent
            (see the module docstring); None ends the launch then.
        output: Where the tasks' output and the restart notes go (`sys.stdout`).
        stop_timeout: Passed to `run_local`.
        run: The runner, `run_local` unless a test replaces it.
    """
    check_count("max_restarts", max_restarts, 0)
    if min_workers is not None:
        check_count("min_workers", min_workers, 1, fix="pass --min_workers=1")
    out = output or sys.stdout
    attempts: list[LaunchResult] = []
    lost: list[TaskLaunch] = []
    restarts = 0  # Of the current cluster size.
    while True:
        launches = plan(tuple(lost))
        workers = _num_workers(launches)
        result = run(launches, output=output, stop_timeout=stop_timeout)
        attempts.append(result)
        if result.succeeded or result.interrupted_by:
            return RestartReport(tuple(attempts), tuple(launch.name for launch in lost))
        cause = result.root_cause
        failed = f"attempt {len(attempts)} failed ({cause.name} {cause.describe()})"
        if restarts < max_restarts:
            restarts += 1
            print(
                f"launch: {failed}; restarting the cluster ({restarts}/{max_restarts})",
                file=out,
                flush=True,
            )
            continue
        if not _can_drop(result, workers, min_workers):
            return RestartReport(tuple(attempts), tuple(launch.name for launch in lost))
        lost.append(_launch_of(launches, cause.name))
        restarts = 0
        print(
            f"launch: {failed}; its restarts are spent: going on without it with "
            f"{workers - 1} of {workers} workers (--min_workers={min_workers}), from the "
            "last checkpoint",
            file=out,
            flush=True,
        )
