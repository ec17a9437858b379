"""Running a planned cluster as local processes: prepare, spawn, watch, stop.

This module owns the local launch in two steps kept apart: `plan_local_launch`
turns a `ClusterSpec` and a command into one `TaskLaunch` (argv + env) per task
without starting anything (`launch.plan.plan_launch`, the one planner every
launcher calls, builds on it), and `run_local` spawns those tasks, prefixes and
forwards their output, watches them, stops them all when the launch ends or
fails, and returns a `LaunchResult`. Each task gets its own env dict; this
module never writes `os.environ`. Cluster layout and TF_CONFIG are
`launch.tf_config`'s, process mechanics `launch._processes`'s, and the report
format `launch.result`'s.
"""

import dataclasses
import os
import signal
import sys
import time
import types
from collections.abc import Mapping, Sequence
from typing import TextIO

from launch._processes import (
    PrefixedOutput,
    RunningTask,
    install_signal_handlers,
    signal_group,
    start_task,
    stop_tasks,
)
from launch.errors import LaunchError, check_count
from launch.gpus import assign_gpus
from launch.result import LaunchResult, TaskOutcome
from launch.tf_config import ClusterSpec, check_layout, check_strategy, tf_config_json

# The thread budget of each task: intra-op threads and OpenMP threads. Inter-op threads are
# left to TensorFlow: with TF_NUM_INTEROP_THREADS=1 a ClusterCoordinator deadlocks (measured:
# a parameter_server job made no progress in 200 s), as blocking remote and collective ops
# wait on the only inter-op thread.
THREAD_ENV_VARS = ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS")
_READER_JOIN_S = 2.0


@dataclasses.dataclass(frozen=True)
class TaskLaunch:
    """One task, ready to spawn: its command and its complete environment.

    Attributes:
        task_type: The task's job, e.g. "worker".
        index: The task's index in its job.
        argv: The command to run.
        env: The task's whole environment (stored read-only).
        is_server: Whether the task is a server (ps, or worker under
            parameter_server): it runs until the other tasks finish and is then
            stopped; it is not expected to exit by itself.
        max_restarts: A server that exits is started again in place (same
            command, env and port) at most this many times before its exit fails
            the launch; the ParameterServerStrategy coordinator carries on with
            the other workers meanwhile and uses the restarted one when it is back.
    """

    task_type: str
    index: int
    argv: tuple[str, ...]
    env: Mapping[str, str]
    is_server: bool = False
    max_restarts: int = 0

    def __post_init__(self):
        object.__setattr__(self, "argv", tuple(self.argv))
        object.__setattr__(self, "env", types.MappingProxyType(dict(self.env)))

    @property
    def name(self) -> str:
        """The task's name, e.g. "worker:1"."""
        return f"{self.task_type}:{self.index}"


def threads_per_process(*, cpu_count: int, num_processes: int) -> int:
    """Returns the CPU threads each of `num_processes` may use: at least 1."""
    check_count("cpu_count", cpu_count, 1)
    check_count("num_processes", num_processes, 1)
    return max(1, cpu_count // num_processes)


def _available_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _check_command(name: str, command: object) -> tuple[str, ...]:
    if (
        isinstance(command, str)
        or not isinstance(command, Sequence)
        or not command
        or not all(isinstance(arg, str) for arg in command)
    ):
        raise LaunchError(
            f"{name} ({command!r}) must be a non-empty list of strings, e.g. "
            "['python', 'train.py', '--steps=10']."
        )
    return tuple(command)


def _check_env(name: str, env: object) -> None:
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise LaunchError(f"{name} must be a mapping of str to str, e.g. dict(os.environ).")


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
    worker_restarts: int = 0,
) -> list[TaskLaunch]:
    """Prepares one `TaskLaunch` per task of `cluster`; starts nothing.

    Under "parameter_server", a worker server that dies is restarted in place up
    to `worker_restarts` times (see `TaskLaunch.max_restarts`).

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
        worker_restarts: Restarts in place of a dead parameter_server worker.

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
    planned = cluster.tasks() if tasks is None else [tuple(task) for task in tasks]
    unknown = [task for task in planned if task not in cluster.tasks()]
    if unknown or not planned or len(set(planned)) != len(planned):
        raise LaunchError(
            f"tasks ({tasks!r}) must be distinct (task_type, index) pairs of the cluster, "
            f"at least one; the cluster has: {cluster.tasks()}."
        )
    planned = [task for task in cluster.tasks() if task in planned]
    command = _check_command("command", command)
    server_command = (
        command if server_command is None else _check_command("server_command", server_command)
    )
    _check_env("base_env", base_env)
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
        defaults = dict.fromkeys(THREAD_ENV_VARS, threads)
        for key, value in defaults.items():
            env.setdefault(key, str(value))
        env.setdefault("PYTHONUNBUFFERED", "1")
        if (task_type, index) in devices:
            env["CUDA_VISIBLE_DEVICES"] = devices[task_type, index]
        is_server = is_ps and task_type in ("worker", "ps")
        restarts = worker_restarts if is_ps and task_type == "worker" else 0
        launches.append(
            TaskLaunch(
                task_type=task_type,
                index=index,
                argv=server_command if is_server else command,
                env=env,
                is_server=is_server,
                max_restarts=restarts,
            )
        )
    return launches


def _restart(task: RunningTask, code: int, output: PrefixedOutput) -> RunningTask:
    restarts = task.restarts + 1
    output.write_line(
        task,
        f"launch: {task.launch.name} exited with code {code}; restarting "
        f"it ({restarts}/{task.launch.max_restarts})",
    )
    fresh = start_task(task.launch, output)
    fresh.restarts = restarts
    return fresh


def _watch(
    tasks: list[RunningTask], received: list[int], poll_interval: float, output: PrefixedOutput
) -> tuple[RunningTask | None, int | None]:
    """Waits until the launch ends; returns (root-cause task, signal received)."""
    while not received:
        for i, task in enumerate(tasks):
            code = task.proc.poll()
            if (
                code is not None
                and task.launch.is_server
                and task.restarts < task.launch.max_restarts
            ):
                tasks[i] = _restart(task, code, output)
        codes = [task.proc.poll() for task in tasks]
        leads = [
            code for task, code in zip(tasks, codes, strict=False) if not task.launch.is_server
        ]
        if all(code == 0 for code in leads):
            return None, None
        for task, code in zip(tasks, codes, strict=False):
            if code is not None and (code != 0 or task.launch.is_server):
                return task, None
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
    output: TextIO | None = None,
    stop_timeout: float = 10.0,
    poll_interval: float = 0.05,
) -> LaunchResult:
    """Spawns every task, watches them, and stops them all when the launch ends.

    Every output line of a task is written to `output` prefixed with its name,
    e.g. "[worker:1] step 10". The launch succeeds when every non-server task
    has exited 0; the servers are then stopped. It fails as soon as any task
    exits non-zero, or a server exits at all before that; the others are then
    stopped. A SIGINT or SIGTERM the launcher gets (from the main thread only)
    is forwarded to every task. Stopping sends a signal (SIGTERM, or the one
    received) to each task's process group and SIGKILL after `stop_timeout`.

    Args:
        launches: The tasks, e.g. from `plan_local_launch`; at least one must
            not be a server.
        output: Where the tasks' prefixed output goes; None for the current
            `sys.stdout`.
        stop_timeout: Seconds a stopped task gets to exit before SIGKILL.
        poll_interval: Seconds between checks of the tasks.

    Returns:
        The `LaunchResult`; its `summary()` reports each task and the root cause.

    Raises:
        LaunchError: If the arguments are invalid; no task is started then.
    """
    launches = list(launches)
    names = [launch.name for launch in launches]
    if not launches or all(launch.is_server for launch in launches):
        raise LaunchError(
            f"launches ({names}) must include at least one non-server task, whose "
            "exit ends the launch."
        )
    if len(set(names)) != len(names):
        raise LaunchError(f"Task names ({names}) must be unique.")
    for launch in launches:
        _check_command(f"argv of task {launch.name}", launch.argv)
        _check_env(f"env of task {launch.name}", launch.env)
    for name, value in (("stop_timeout", stop_timeout), ("poll_interval", poll_interval)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise LaunchError(f"{name} ({value!r}) must be a positive number of seconds.")
    prefixed = PrefixedOutput(sys.stdout if output is None else output)
    received: list[int] = []
    restore = install_signal_handlers(received)
    tasks: list[RunningTask] = []
    root = interrupt = None
    try:
        for launch in launches:
            tasks.append(start_task(launch, prefixed))
            if tasks[-1].proc is None:
                root = tasks[-1]
                break
        if root is None:
            root, interrupt = _watch(tasks, received, poll_interval, prefixed)
        stop_tasks(tasks, interrupt or signal.SIGTERM, stop_timeout, received, poll_interval)
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
    outcomes = {
        task.launch.name: TaskOutcome(
            name=task.launch.name,
            exit_code=None if task.proc is None else task.proc.returncode,
            log_tail=prefixed.tail_of(task),
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
