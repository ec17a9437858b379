"""Running a planned launch: the network namespace, restarts, the start-up line.

This module owns running what `launch.plan.plan_launch` planned, the same way
for every launcher (`python -m launch`, its `hosts --this_host`, the trainer's
local cluster, the scaling report): the tasks run in a private network
namespace when the plan allows it (`launch.network`), the start-up line
(the plan's description plus what was done about the network) goes to
`announce`, and a failed attempt is planned anew (fresh free ports) and run
again up to `max_restarts` times (`launch.restarts`); with `min_workers` a
`multi_worker` cluster planned here goes on with fewer workers when one cannot
come back (`resize` makes the smaller spec; the GPUs the launcher gave a lost
worker are left out of the next plans). Spawning and watching the tasks is
`launch.runner.run_local`'s. Standard library only.
"""

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TextIO

from launch.errors import LaunchError, check_count
from launch.network import Isolation, inside, private_network
from launch.plan import LaunchPlan, LaunchSpec, plan_launch
from launch.restarts import RestartReport, run_with_restarts
from launch.task_launch import TaskLaunch


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


def check_min_workers(spec: LaunchSpec, min_workers: int | None) -> None:
    """Checks that `spec` can go on with as few as `min_workers` workers.

    Raises:
        LaunchError: One line naming the value, the rule and the fix.
    """
    if min_workers is None:
        return
    check_count("min_workers", min_workers, 1, fix="pass --min_workers=1")
    if spec.strategy != "multi_worker":
        raise LaunchError(
            f"min_workers ({min_workers}) is for strategy 'multi_worker', not "
            f"{spec.strategy!r}: a parameter_server worker is restarted in place while the "
            "others go on; drop --min_workers."
        )
    if spec.cluster is not None:
        raise LaunchError(
            f"min_workers ({min_workers}) needs a cluster planned here; a cluster planned "
            "elsewhere (hosts, Slurm, Kubernetes) is resized by the engine that runs it. "
            "Drop --min_workers."
        )
    if min_workers > spec.num_workers:
        raise LaunchError(
            f"min_workers ({min_workers}) must be at most num_workers ({spec.num_workers}); "
            f"pass --min_workers={spec.num_workers} or fewer."
        )


def run_launch(
    spec: LaunchSpec | Callable[[], LaunchSpec],
    *,
    announce: Callable[[str], None] | None = None,
    output: TextIO | None = None,
    stop_timeout: float = 10.0,
    max_restarts: int = 0,
    min_workers: int | None = None,
    resize: Callable[[LaunchSpec, int], LaunchSpec] = with_workers,
) -> RestartReport:
    """Plans `spec`, runs its tasks until the launch ends, and restarts it after a failure.

    Each attempt is planned anew (`plan_launch`: fresh free ports unless the
    spec gives them) and runs inside the same network namespace. The first
    plan is made before anything else, so a wrong spec raises before any
    namespace or process exists.

    Args:
        spec: What to launch, or a function returning it, called once per
            attempt (e.g. for a fresh tf.data service port).
        announce: Called with each attempt's start-up line (no program prefix).
        output: Where the tasks' prefixed output and restart notes go; None for
            `sys.stdout`.
        stop_timeout: Seconds a stopped task gets before SIGKILL.
        max_restarts: Attempts after the first one fails (with `min_workers`: of
            each cluster size); 0 runs it once.
        min_workers: Under "multi_worker", go on with fewer workers, at least this
            many, when a worker's restarts are spent (`launch.restarts`); None ends
            the launch then.
        resize: Returns the spec with a given number of workers, e.g. one whose
            command also names the count; `with_workers` by default.

    Returns:
        The `RestartReport`; its last attempt decides the exit code.

    Raises:
        LaunchError: If the spec or `min_workers` is invalid; nothing is started then.
    """
    check_count("max_restarts", max_restarts, 0)
    make_spec = spec if callable(spec) else (lambda: spec)
    first = make_spec()
    check_min_workers(first, min_workers)
    plans = [plan_launch(first)]

    def next_spec(lost: tuple[TaskLaunch, ...]) -> LaunchSpec:
        fresh = make_spec()
        if not lost:
            return fresh
        return _without_gpus_of(resize(fresh, fresh.num_workers - len(lost)), lost)

    with _network(plans[0]) as isolation:

        def attempt(lost: tuple[TaskLaunch, ...]):
            plan = plans.pop() if plans else plan_launch(next_spec(lost))
            if announce is not None:
                network = (
                    "" if isolation is None else "; " + isolation.describe(plan.cluster.ports())
                )
                announce(plan.description + network)
            return list(plan.launches) if isolation is None else inside(plan.launches, isolation)

        return run_with_restarts(
            attempt,
            max_restarts=max_restarts,
            min_workers=min_workers,
            output=output,
            stop_timeout=stop_timeout,
        )
