"""Each task of a cluster on this machine as a `TaskLaunch`: argv, env, threads, GPUs.

This module owns turning a `ClusterSpec` and a command into one `TaskLaunch` per task
(`plan_local_launch`) without starting anything: each task's TF_CONFIG, its share of
this machine's CPUs (`threads_per_process`, `THREAD_ENV_VARS`) and of its GPUs
(`launch.gpus.assign_gpus`). `launch.plan.plan_launch`, the one planner every launcher
calls, builds on it; spawning the tasks is `launch.runner`'s job. Each task gets its own
env dict; this module never writes `os.environ`. Standard library only.
"""

import os
from collections.abc import Mapping, Sequence

from launch.command import check_command
from launch.errors import LaunchError, check_count
from launch.gpus import assign_gpus
from launch.task_launch import TaskLaunch, check_env
from launch.tf_config import ClusterSpec, check_layout, check_strategy, tf_config_json

# The thread budget of each task: intra-op threads and OpenMP threads. Inter-op threads are
# left to TensorFlow: with TF_NUM_INTEROP_THREADS=1 a ClusterCoordinator deadlocks (measured:
# a parameter_server job made no progress in 200 s), as blocking remote and collective ops
# wait on the only inter-op thread.
THREAD_ENV_VARS = ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS")


def threads_per_process(*, cpu_count: int, num_processes: int) -> int:
    """Returns the CPU threads each of `num_processes` may use: at least 1."""
    check_count("cpu_count", cpu_count, 1)
    check_count("num_processes", num_processes, 1)
    return max(1, cpu_count // num_processes)


def _available_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _planned_tasks(
    cluster: ClusterSpec, tasks: Sequence[tuple[str, int]] | None
) -> list[tuple[str, int]]:
    """The tasks to prepare, in `cluster.tasks()` order; all of them when `tasks` is None."""
    if tasks is None:
        return cluster.tasks()
    wanted = [tuple(task) for task in tasks]
    unknown = [task for task in wanted if task not in cluster.tasks()]
    if unknown or not wanted or len(set(wanted)) != len(wanted):
        raise LaunchError(
            f"tasks ({tasks!r}) must be distinct (task_type, index) pairs of the cluster, "
            f"at least one; the cluster has: {cluster.tasks()}."
        )
    return [task for task in cluster.tasks() if task in wanted]


def plan_local_launch(
    *,
    cluster: ClusterSpec,
    strategy: str,
    command: Sequence[str],
    server_command: Sequence[str] | None = None,
    base_env: Mapping[str, str],
    cpu_count: int | None = None,
    gpus_per_worker: int = 0,
    gpu_ids: Sequence[str] | None = None,
    tasks: Sequence[tuple[str, int]] | None = None,
) -> list[TaskLaunch]:
    """Prepares one `TaskLaunch` per task of `cluster`; starts nothing.

    Each task's env is `base_env` plus TF_CONFIG, PYTHONUNBUFFERED=1 and a
    thread budget: the CPUs are divided among the compute processes (the
    workers; for "parameter_server" also the chief), ps tasks get 1 thread.
    TF_NUM_INTRAOP_THREADS and OMP_NUM_THREADS get the budget; inter-op threads
    stay TensorFlow's default (one would deadlock a coordinator). A thread or
    PYTHONUNBUFFERED value already in `base_env` is kept; TF_CONFIG always
    replaces one in `base_env`. CUDA_VISIBLE_DEVICES is set as
    `launch.gpus.assign_gpus` divides `gpu_ids` among the planned tasks.

    Args:
        cluster: The cluster, e.g. from `launch.plan.plan_local_cluster`.
        strategy: One of `launch.tf_config.CLUSTER_STRATEGIES`; must fit the
            cluster's jobs (`launch.tf_config.STRATEGY_LAYOUTS`).
        command: The command of non-server tasks (all workers for
            "multi_worker"; the chief for "parameter_server").
        server_command: The command of ps and worker tasks under
            "parameter_server"; defaults to `command`.
        base_env: The environment every task starts from; not modified.
        cpu_count: CPUs to divide; defaults to the CPUs this process may use.
        gpus_per_worker: GPUs of each worker (and `multi_worker` chief); 0
            leaves CUDA_VISIBLE_DEVICES as inherited, except that ps tasks and
            the chief of "parameter_server" run on the CPU when `gpu_ids` has any.
        gpu_ids: This machine's GPU ids (`launch.visible_gpu_ids`); None when
            unknown, which allows only `gpus_per_worker` 0.
        tasks: The `(task_type, index)` of the tasks to prepare, e.g. those of
            one host of a larger cluster; defaults to every task of `cluster`.

    Returns:
        One `TaskLaunch` per planned task, in `cluster.tasks()` order.

    Raises:
        LaunchError: If an argument is invalid or the cluster does not fit the
            strategy.
    """
    check_strategy(strategy, where="a local launch")
    if not isinstance(cluster, ClusterSpec):
        raise LaunchError(
            f"cluster ({cluster!r}) must be a ClusterSpec; plan one with plan_local_cluster."
        )
    check_layout(
        cluster, strategy, fix=f"plan it with plan_local_cluster(strategy={strategy!r}, ...)"
    )
    planned = _planned_tasks(cluster, tasks)
    command = check_command("command", command)
    server_command = (
        command if server_command is None else check_command("server_command", server_command)
    )
    check_env("base_env", base_env)
    is_ps = strategy == "parameter_server"
    num_compute = sum(task_type != "ps" for task_type, _ in planned)
    compute_threads = threads_per_process(
        cpu_count=_available_cpus() if cpu_count is None else cpu_count,
        num_processes=max(1, num_compute),
    )
    devices = assign_gpus(
        strategy=strategy, tasks=planned, gpu_ids=gpu_ids, gpus_per_worker=gpus_per_worker
    )
    launches = []
    for task_type, index in planned:
        threads = 1 if task_type == "ps" else compute_threads
        env = dict(base_env)
        env["TF_CONFIG"] = tf_config_json(cluster, task_type, index)
        for key in THREAD_ENV_VARS:
            env.setdefault(key, str(threads))
        env.setdefault("PYTHONUNBUFFERED", "1")
        if (task_type, index) in devices:
            env["CUDA_VISIBLE_DEVICES"] = devices[task_type, index]
        is_server = is_ps and task_type in ("worker", "ps")
        launches.append(
            TaskLaunch(
                task_type=task_type,
                index=index,
                argv=server_command if is_server else command,
                env=env,
                is_server=is_server,
            )
        )
    return launches
