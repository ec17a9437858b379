"""The TF_CONFIG schema: task types, cluster and task specs, strategy layouts, JSON.

This module is the one source of truth for what a TensorFlow cluster looks like:
the task types (`TASK_TYPES`), the cluster (`ClusterSpec`: job name to
"host:port" addresses, with its rules: known job names, "host:port" addresses
with ports in 1..65535, every address once, at most one chief), one task of it
(`TaskSpec`), a parsed TF_CONFIG (`ClusterConfig`: the cluster plus this
process's task), the jobs each multi-process strategy needs (`STRATEGY_LAYOUTS`,
`check_layout`), and the TF_CONFIG text both ways (`tf_config_json` encodes,
`parse_tf_config` decodes). It also finds free ports for a cluster's addresses
(`free_ports`). It is pure standard library: it starts no process and never
reads or writes `os.environ` (tfdist reads TF_CONFIG in
`tfdist.distribute.cluster`, the launchers write it into each task's env dict).
Planning a launch is `launch.plan`'s job.

Note that TensorFlow's gRPC server listens on all interfaces of the port it is
given, without authentication, even when the address says `localhost`.
"""

import dataclasses
import json
import socket
import types
from collections.abc import Mapping, Sequence

from launch.errors import LaunchError, check_count

TASK_TYPES = ("chief", "worker", "ps", "evaluator")
# The jobs of a cluster of each multi-process strategy, in `TASK_TYPES` order. A
# multi_worker cluster may have a chief (TensorFlow's worker 0 acts as chief without one).
STRATEGY_LAYOUTS = types.MappingProxyType(
    {
        "multi_worker": (("worker",), ("chief", "worker")),
        "parameter_server": (("chief", "worker", "ps"),),
    }
)
CLUSTER_STRATEGIES = tuple(STRATEGY_LAYOUTS)

MAX_PORT = 65535  # The largest TCP port; ports are 1..MAX_PORT.
_TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
)


def check_strategy(strategy: object, *, where: str) -> str:
    """Returns `strategy` if it is one of `CLUSTER_STRATEGIES`.

    Args:
        strategy: The strategy name received.
        where: What it is for, in the message, e.g. "a local cluster".

    Raises:
        LaunchError: "Unknown strategy 'x' for WHERE. Expected one of: ...".
    """
    if not isinstance(strategy, str) or strategy not in STRATEGY_LAYOUTS:
        raise LaunchError(
            f"Unknown strategy {strategy!r} for {where}. "
            f"Expected one of: {', '.join(CLUSTER_STRATEGIES)}."
        )
    return strategy


def check_address(job: str, index: int, address: object) -> str:
    """Returns `address` if it looks like "host:port" with a port in 1..65535."""
    where = f"Address {address!r} of task {job}:{index}"
    if not isinstance(address, str):
        raise LaunchError(f"{where} must be a 'host:port' string.")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise LaunchError(f"{where} must look like 'host:port', e.g. 'localhost:2222'.")
    if not 1 <= int(port) <= MAX_PORT:
        raise LaunchError(f"{where} has port {port}; ports must be in 1..{MAX_PORT}.")
    return address


def _checked_jobs(jobs: object) -> dict[str, tuple[str, ...]]:
    if not isinstance(jobs, Mapping) or not jobs:
        raise LaunchError(
            f"Cluster jobs ({jobs!r}) must be a non-empty mapping of job name to "
            f"addresses; job names are: {', '.join(TASK_TYPES)}."
        )
    unknown = sorted(str(job) for job in jobs if job not in TASK_TYPES)
    if unknown:
        raise LaunchError(
            f"Unknown job name {unknown[0]!r}. Expected one of: {', '.join(TASK_TYPES)}."
        )
    checked = {}
    for job in (job for job in TASK_TYPES if job in jobs):
        addresses = jobs[job]
        if isinstance(addresses, str) or not isinstance(addresses, Sequence):
            raise LaunchError(
                f"Addresses of job {job!r} ({addresses!r}) must be a list of 'host:port' strings."
            )
        if not addresses:
            raise LaunchError(
                f"Job {job!r} has no tasks; give it at least one address or leave it out."
            )
        checked[job] = tuple(
            check_address(job, index, address) for index, address in enumerate(addresses)
        )
    if len(checked.get("chief", ())) > 1:
        raise LaunchError(
            f"Job 'chief' has {len(checked['chief'])} tasks; a cluster has at most 1 chief."
        )
    seen: dict[str, str] = {}
    for job, addresses in checked.items():
        for index, address in enumerate(addresses):
            if address in seen:
                raise LaunchError(
                    f"Address {address!r} is used by both {seen[address]} and "
                    f"{job}:{index}; every task needs its own port."
                )
            seen[address] = f"{job}:{index}"
    return checked


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """The jobs of a TensorFlow cluster and the address of each task.

    Attributes:
        jobs: Job name (one of `TASK_TYPES`) to the "host:port" addresses of
            its tasks, in task-index order. Stored read-only, ordered as
            `TASK_TYPES`, with tuples of addresses.
    """

    jobs: Mapping[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "jobs", types.MappingProxyType(_checked_jobs(self.jobs)))

    def __hash__(self) -> int:
        return hash(tuple(self.jobs.items()))

    # The read-only mapping does not pickle; its plain copy does.
    def __reduce__(self) -> tuple[type["ClusterSpec"], tuple[dict[str, list[str]]]]:
        return ClusterSpec, (self.as_dict(),)

    def tasks(self) -> list[tuple[str, int]]:
        """Returns every `(task_type, index)`, chief first, then worker, ps, evaluator."""
        return [
            (job, index) for job, addresses in self.jobs.items() for index in range(len(addresses))
        ]

    def address(self, task_type: str, index: int) -> str:
        """Returns the address of one task; raises `LaunchError` if it is not in the cluster."""
        return self.jobs[check_task(self, task_type, index).type][index]

    def as_dict(self) -> dict[str, list[str]]:
        """Returns the cluster as plain lists: the TF_CONFIG "cluster" value."""
        return {job: list(addresses) for job, addresses in self.jobs.items()}

    def ports(self) -> list[int]:
        """Every task's port, in task order."""
        return [
            int(address.rpartition(":")[2])
            for addresses in self.jobs.values()
            for address in addresses
        ]

    @property
    def num_tasks(self) -> int:
        """The number of tasks in all jobs."""
        return sum(len(addresses) for addresses in self.jobs.values())


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One task of a cluster: its job (task type) and its index in that job."""

    type: str
    index: int

    @property
    def name(self) -> str:
        """The task's name, e.g. "worker:1"."""
        return f"{self.type}:{self.index}"


def check_task(cluster: ClusterSpec, task_type: object, index: object) -> TaskSpec:
    """Returns the `TaskSpec` if `task_type:index` is a task of `cluster`.

    Raises:
        LaunchError: If the job is not in `cluster` or the index is out of range.
    """
    if not isinstance(task_type, str) or task_type not in cluster.jobs:
        raise LaunchError(
            f"Task type {task_type!r} is not a job of the cluster. "
            f"Expected one of: {', '.join(cluster.jobs)}."
        )
    count = len(cluster.jobs[task_type])
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise LaunchError(
            f"Task index {index!r} is out of range for job {task_type!r}, "
            f"which has {count} task(s): pass an index in 0..{count - 1}."
        )
    return TaskSpec(task_type, index)


def check_layout(cluster: ClusterSpec, strategy: str, *, fix: str) -> ClusterSpec:
    """Returns `cluster` if its jobs are a layout of `strategy` (`STRATEGY_LAYOUTS`).

    Args:
        cluster: The cluster.
        strategy: One of `CLUSTER_STRATEGIES`.
        fix: How to fix a mismatch, at the end of the message.

    Raises:
        LaunchError: If `strategy` is unknown or the cluster's jobs do not fit it.
    """
    check_strategy(strategy, where="a cluster")
    if tuple(cluster.jobs) not in STRATEGY_LAYOUTS[strategy]:
        layouts = " or ".join("{" + ", ".join(jobs) + "}" for jobs in STRATEGY_LAYOUTS[strategy])
        raise LaunchError(
            f"Cluster jobs ({', '.join(cluster.jobs)}) do not fit strategy {strategy!r}, "
            f"which needs the jobs {layouts}; {fix}."
        )
    return cluster


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """A parsed TF_CONFIG: the cluster's jobs and this process's task in it.

    Attributes:
        jobs: Job name to addresses, checked as `ClusterSpec` checks them and
            stored read-only in `TASK_TYPES` order.
        task: This process's task; a task of `jobs`.
    """

    jobs: Mapping[str, tuple[str, ...]]
    task: TaskSpec

    def __post_init__(self) -> None:
        cluster = ClusterSpec(jobs=self.jobs)
        object.__setattr__(self, "jobs", cluster.jobs)
        if not isinstance(self.task, TaskSpec):
            raise LaunchError(
                f"task ({self.task!r}) must be a TaskSpec, e.g. TaskSpec('worker', 0)."
            )
        check_task(cluster, self.task.type, self.task.index)
        if "ps" in self.jobs and "chief" not in self.jobs:
            raise LaunchError(
                "A cluster with 'ps' tasks needs a 'chief' (the coordinator); "
                "add a 'chief' job with one address."
            )

    # The read-only mapping does not pickle; its plain copy does.
    def __reduce__(self) -> tuple[type["ClusterConfig"], tuple[dict[str, list[str]], TaskSpec]]:
        return ClusterConfig, (self.cluster.as_dict(), self.task)

    @property
    def cluster(self) -> ClusterSpec:
        """The cluster without this process's task."""
        return ClusterSpec(jobs=self.jobs)

    @property
    def has_ps(self) -> bool:
        """Whether the cluster has ps tasks: a parameter_server cluster."""
        return bool(self.jobs.get("ps"))

    @property
    def num_ps(self) -> int:
        """The number of ps tasks."""
        return len(self.jobs.get("ps", ()))

    @property
    def num_workers(self) -> int:
        """Processes that compute: chief plus workers (the coordinator does not, under PSS)."""
        workers = len(self.jobs.get("worker", ()))
        if self.has_ps:
            return workers
        return workers + len(self.jobs.get("chief", ()))

    @property
    def is_chief(self) -> bool:
        """The chief writes checkpoints and summaries: `chief`, else `worker` 0."""
        if self.task.type == "chief":
            return True
        return "chief" not in self.jobs and self.task == TaskSpec("worker", 0)

    @property
    def strategy(self) -> str:
        """The multi-process strategy the cluster's layout is for."""
        return "parameter_server" if self.has_ps else "multi_worker"

    def to_json(self) -> str:
        """Returns this TF_CONFIG as JSON text (`tf_config_json`)."""
        return tf_config_json(self.cluster, self.task.type, self.task.index)


def tf_config_json(cluster: ClusterSpec, task_type: str, index: int) -> str:
    """Returns the TF_CONFIG JSON for one task of `cluster`.

    Args:
        cluster: The whole cluster.
        task_type: The task's job name; must be a job of `cluster`.
        index: The task's index in its job.

    Returns:
        `{"cluster": cluster.as_dict(), "task": {"type": ..., "index": ...}}`
        as JSON.

    Raises:
        LaunchError: If the task is not in `cluster`.
    """
    check_task(cluster, task_type, index)
    return json.dumps({"cluster": cluster.as_dict(), "task": {"type": task_type, "index": index}})


def _malformed(problem: str) -> LaunchError:
    return LaunchError(
        f"TF_CONFIG is malformed: {problem}. Expected JSON like {_TF_CONFIG_EXAMPLE}."
    )


def _clause(error: LaunchError) -> str:
    text = str(error).rstrip(".")
    return text[:1].lower() + text[1:]


def parse_tf_config(text: str | None) -> ClusterConfig | None:
    """Parses and checks TF_CONFIG text: the inverse of `tf_config_json`.

    Args:
        text: The TF_CONFIG value; None or blank means no cluster.

    Returns:
        The `ClusterConfig`, or None without a cluster. A task without "index"
        is index 0.

    Raises:
        LaunchError: One line, "TF_CONFIG is malformed: <problem>. Expected
            JSON like {...}.", if the text is not a valid TF_CONFIG.
    """
    if text is None or not text.strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise _malformed(f"not valid JSON ({error.msg} at character {error.pos})") from None
    except RecursionError:
        raise _malformed("it is nested too deeply") from None
    if not isinstance(data, dict):
        raise _malformed("the top level must be a JSON object")
    if "cluster" not in data:
        raise _malformed("it has no 'cluster'")
    if not isinstance(data["cluster"], dict) or not data["cluster"]:
        raise _malformed("'cluster' must be a non-empty object of job name to addresses")
    task = data.get("task")
    if not isinstance(task, dict) or "type" not in task:
        raise _malformed("'task' must be an object with 'type' and 'index'")
    try:
        return ClusterConfig(
            jobs=data["cluster"], task=TaskSpec(task["type"], task.get("index", 0))
        )
    except LaunchError as error:
        raise _malformed(_clause(error)) from None


def free_ports(n: int, host: str = "localhost") -> list[int]:
    """Returns `n` distinct TCP ports that are free on `host` right now.

    All `n` sockets are bound (to port 0, so the OS picks) before any is
    closed, so the ports differ. Another process may still take a port before
    the task that gets it binds it; that window is short on a quiet machine.

    Args:
        n: How many ports; at least 0.
        host: The host name or address to bind.

    Raises:
        LaunchError: If `n` is negative or `host` cannot be bound.
    """
    check_count("Number of ports", n, 0)
    sockets = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    except (OSError, TypeError, UnicodeError) as error:  # TypeError: a NUL in the host name.
        raise LaunchError(
            f"Cannot bind a free port on host {host!r} ({error}); pass a host "
            "name or address of this machine, e.g. --host=localhost."
        ) from error
    finally:
        for sock in sockets:
            sock.close()
