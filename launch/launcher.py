"""Running a planned launch: the network namespace, the attempts, the start-up line.

This module owns running what `launch.plan.plan_launch` planned, the same way
for every launcher (`python -m launch`, its `hosts --this_host`, the trainer's
local cluster, the scaling report): the tasks run in a private network
namespace when the plan allows it (`launch.network`), the start-up line
(the plan's description plus what was done about the network) goes to
`announce`, and the attempts follow one `launch.restarts.RestartPolicy`: a
parameter_server worker server is restarted in place within an attempt, any
other failure ends it and the cluster is planned anew (fresh free ports) and
run again (each attempt's tasks log to their own files, `launch.task_logs`, and each
failed attempt gets one line: its root cause, what follows, where its logs are); with
`min_workers` a `multi_worker` cluster planned here goes on
with fewer workers when one cannot come back (`resize` makes the smaller spec;
the GPUs the launcher gave a lost worker are left out of the next plans).
Spawning and watching one attempt's tasks is `launch.runner.run_local`'s.
Standard library only.
"""

import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from launch.network import Isolation, inside, private_network
from launch.plan import LaunchPlan, LaunchSpec, plan_launch
from launch.restarts import RestartPolicy
from launch.result import LaunchResult, RestartReport
from launch.runner import run_local
from launch.streams import TextSink
from launch.task_launch import TaskLaunch
from launch.task_logs import AttemptLogs, LaunchLogs


class Runner(Protocol):
    """What runs one attempt's tasks: `launch.runner.run_local`'s signature."""

    def __call__(
        self,
        launches: Sequence[TaskLaunch],
        *,
        output: TextSink | None = ...,
        stop_timeout: float = ...,
        restarts: RestartPolicy | None = ...,
        logs: AttemptLogs | None = ...,
        quiet_peers: bool = ...,
    ) -> LaunchResult: ...


def _network(plan: LaunchPlan) -> AbstractContextManager[Isolation | None]:
    """The isolation of the plan's tasks; None when the cluster also runs elsewhere."""
    if not plan.whole_cluster:
        return contextlib.nullcontext(None)
    if plan.isolate_network or not plan.spec.isolate_network:
        return private_network(enabled=plan.isolate_network)
    return contextlib.nullcontext(
        Isolation(
            None,
            "the cluster's addresses are not on loopback; only a loopback cluster can be isolated",
        )
    )


def with_workers(spec: LaunchSpec, num_workers: int) -> LaunchSpec:
    """`spec` with `num_workers` workers: the default `resize` of `run_launch`."""
    return dataclasses.replace(spec, num_workers=num_workers)


def _without_gpus_of(spec: LaunchSpec, lost: Sequence[TaskLaunch]) -> LaunchSpec:
    """`spec` without the GPUs the launcher gave the lost workers: one may be what failed."""
    if not spec.gpus_per_worker or spec.gpu_ids is None:
        return spec
    gone = {
        gpu
        for launch in lost
        for gpu in launch.env.get("CUDA_VISIBLE_DEVICES", "").split(",")
        if gpu
    }
    return dataclasses.replace(spec, gpu_ids=[gpu for gpu in spec.gpu_ids if gpu not in gone])


def run_with_restarts(
    plan: Callable[[tuple[TaskLaunch, ...]], Sequence[TaskLaunch]],
    *,
    restarts: RestartPolicy,
    output: TextSink | None = None,
    stop_timeout: float = 10.0,
    logs: LaunchLogs | None = None,
    quiet_peers: bool = True,
    run: Runner = run_local,
) -> RestartReport:
    """Runs `plan(())`'s tasks, then each attempt `restarts` calls for after a failure.

    After each failed attempt it prints one line: the root cause, what follows
    (`Decision.note`) and, with `logs`, where the attempt's full logs are.

    Args:
        plan: Returns a fresh set of launches (new ports) for each attempt, given the
            workers lost so far (their launches, e.g. to leave their GPUs out):
            `plan(lost)` has `len(lost)` workers fewer than `plan(())`.
        restarts: The policy: in-place restarts within an attempt, then whether to
            run the cluster again, the same or with the failed worker left out.
        output: Where the tasks' output and the restart notes go (`sys.stdout`).
        stop_timeout: Passed to `run`.
        logs: Where each attempt's per-task log files go (`attempt-1/worker-1.log`);
            None writes none.
        quiet_peers: Passed to `run`: with `logs`, a failed task's peers are quiet.
        run: The runner, `run_local` unless a test replaces it.
    """
    out = output or sys.stdout
    attempts: list[LaunchResult] = []
    lost: list[TaskLaunch] = []
    used = 0  # Cluster restarts of the current cluster size.
    while True:
        launches = plan(tuple(lost))
        with _attempt_logs(logs, len(attempts) + 1) as attempt_logs:
            result = run(
                launches,
                output=output,
                stop_timeout=stop_timeout,
                restarts=restarts,
                logs=attempt_logs,
                quiet_peers=quiet_peers,
            )
        attempts.append(result)
        workers = sum(launch.task_type == "worker" for launch in launches)
        decision = restarts.after(result, attempt=len(attempts), restarts=used, workers=workers)
        if decision.note:
            where = "" if attempt_logs is None else f"; full logs: {attempt_logs.directory}"
            print(f"launch: {decision.note}{where}", file=out, flush=True)
        if not decision.restart:
            return RestartReport(tuple(attempts), tuple(launch.name for launch in lost))
        if decision.drop is None:
            used += 1
        else:
            lost.append(next(launch for launch in launches if launch.name == decision.drop))
            used = 0


def _attempt_logs(
    logs: LaunchLogs | None, number: int
) -> AbstractContextManager[AttemptLogs | None]:
    """Attempt `number`'s log files, closed when it ends; nothing without `logs`."""
    return contextlib.nullcontext(None) if logs is None else logs.attempt(number)


def run_launch(
    spec: LaunchSpec | Callable[[], LaunchSpec],
    *,
    announce: Callable[[str], None] | None = None,
    output: TextSink | None = None,
    stop_timeout: float = 10.0,
    max_restarts: int = 0,
    min_workers: int | None = None,
    resize: Callable[[LaunchSpec, int], LaunchSpec] = with_workers,
    log_dir: str | os.PathLike[str] | None = None,
    quiet_peers: bool = True,
) -> RestartReport:
    """Plans `spec`, runs its tasks until the launch ends, and restarts after a failure.

    Each attempt is planned anew (`plan_launch`: fresh free ports unless the
    spec gives them) and runs inside the same network namespace. The first
    plan is made before anything else, so a wrong spec raises before any
    namespace or process exists. `max_restarts` and `min_workers` make the
    `RestartPolicy` (`launch.restarts`) of every attempt.

    Args:
        spec: What to launch, or a function returning it, called once per
            attempt (e.g. for a fresh tf.data service port).
        announce: Called with each attempt's start-up line (no program prefix).
        output: Where the tasks' prefixed output and restart notes go; None for
            `sys.stdout`.
        stop_timeout: Seconds a stopped task gets before SIGKILL.
        max_restarts: In-place restarts of each parameter_server worker server,
            and restarts of the whole cluster after any other failure (with
            `min_workers`: of each cluster size); 0 runs it once.
        min_workers: Under "multi_worker", go on with fewer workers, at least this
            many, when a worker's restarts are spent; None ends the launch then.
        resize: Returns the spec with a given number of workers, e.g. one whose
            command also names the count; `with_workers` by default.
        log_dir: Where every task's full output goes, one file per task and
            attempt (`attempt-1/worker-1.log`); None: a fresh directory under the
            system's temp directory. Each failed attempt's line names it.
        quiet_peers: Whether, once a task fails, the other tasks' output goes to
            their log files only (the root cause's is still printed); False prints
            everything, as `python -m launch --verbose` does.

    Returns:
        The `RestartReport`; its last attempt decides the exit code.

    Raises:
        LaunchError: If the spec, `max_restarts` or `min_workers` is invalid, or
            the log directory cannot be created; nothing is started then.
    """
    restarts = RestartPolicy(max_restarts=max_restarts, min_workers=min_workers)
    make_spec: Callable[[], LaunchSpec] = spec if callable(spec) else (lambda: spec)
    first = make_spec()
    restarts.check_fits(
        strategy=first.strategy,
        num_workers=first.num_workers,
        planned_here=first.cluster is None,
    )
    plans = [plan_launch(first)]
    logs = LaunchLogs(log_dir)

    def next_spec(lost: tuple[TaskLaunch, ...]) -> LaunchSpec:
        fresh = make_spec()
        if not lost:
            return fresh
        return _without_gpus_of(resize(fresh, fresh.num_workers - len(lost)), lost)

    with _network(plans[0]) as isolation:

        def attempt(lost: tuple[TaskLaunch, ...]) -> list[TaskLaunch]:
            plan = plans.pop() if plans else plan_launch(next_spec(lost))
            if announce is not None:
                network = (
                    "" if isolation is None else "; " + isolation.describe(plan.cluster.ports())
                )
                announce(plan.description + network)
            return list(plan.launches) if isolation is None else inside(plan.launches, isolation)

        return run_with_restarts(
            attempt,
            restarts=restarts,
            output=output,
            stop_timeout=stop_timeout,
            logs=logs,
            quiet_peers=quiet_peers,
        )
