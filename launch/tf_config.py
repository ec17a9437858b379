"""Cluster layouts and the TF_CONFIG each task of a cluster receives.

This module owns the description of a TensorFlow cluster (`ClusterSpec`), the
planning of a cluster on one host (`plan_local_cluster`, `free_ports`) and the
per-task TF_CONFIG JSON (`tf_config_json`). It is pure standard library: it
starts no process and never reads or writes `os.environ`; running the tasks is
`launch.local`'s job.

Note that TensorFlow's gRPC server listens on all interfaces of the port it is
given, without authentication, even when the address says `localhost`.
"""

import dataclasses
import json
import socket
import types
from typing import Mapping, Sequence

from launch.errors import LaunchError

TASK_TYPES = ("chief", "worker", "ps", "evaluator")
LOCAL_STRATEGIES = ("multi_worker", "parameter_server")

_MAX_PORT = 65535


def _check_address(job: str, index: int, address: object) -> None:
    """Raises `LaunchError` unless `address` looks like "host:port"."""
    where = f"Address {address!r} of task {job}:{index}"
    if not isinstance(address, str):
        raise LaunchError(f"{where} must be a 'host:port' string.")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise LaunchError(f"{where} must look like 'host:port', e.g. 'localhost:2222'.")
    if not 1 <= int(port) <= _MAX_PORT:
        raise LaunchError(f"{where} has port {port}; ports must be in 1..{_MAX_PORT}.")


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """The jobs of a TensorFlow cluster and the address of each task.

    Attributes:
        jobs: Job name (one of `TASK_TYPES`) to the "host:port" addresses of
            its tasks, in task-index order. Stored read-only, ordered as
            `TASK_TYPES`, with tuples of addresses.
    """

    jobs: Mapping[str, tuple[str, ...]]

    def __post_init__(self):
        if not isinstance(self.jobs, Mapping) or not self.jobs:
            raise LaunchError(
                f"ClusterSpec jobs ({self.jobs!r}) must be a non-empty mapping of "
                f"job name to addresses; job names are: {', '.join(TASK_TYPES)}.")
        unknown = sorted(str(job) for job in self.jobs if job not in TASK_TYPES)
        if unknown:
            raise LaunchError(
                f"Unknown job name {unknown[0]!r} in ClusterSpec. "
                f"Expected one of: {', '.join(TASK_TYPES)}.")
        jobs = {}
        for job in TASK_TYPES:
            if job not in self.jobs:
                continue
            addresses = self.jobs[job]
            if isinstance(addresses, str) or not isinstance(addresses, Sequence):
                raise LaunchError(
                    f"Addresses of job {job!r} ({addresses!r}) must be a list of "
                    "'host:port' strings.")
            if not addresses:
                raise LaunchError(
                    f"Job {job!r} has no tasks; give it at least one address or "
                    "leave it out.")
            for index, address in enumerate(addresses):
                _check_address(job, index, address)
            jobs[job] = tuple(addresses)
        if len(jobs.get("chief", ())) > 1:
            raise LaunchError(
                f"Job 'chief' has {len(jobs['chief'])} tasks; a cluster has at "
                "most 1 chief.")
        seen = {}
        for job, addresses in jobs.items():
            for index, address in enumerate(addresses):
                if address in seen:
                    raise LaunchError(
                        f"Address {address!r} is given to both {seen[address]} and "
                        f"{job}:{index}; every task needs its own port.")
                seen[address] = f"{job}:{index}"
        object.__setattr__(self, "jobs", types.MappingProxyType(jobs))

    def __hash__(self):
        return hash(tuple(self.jobs.items()))

    def tasks(self) -> list[tuple[str, int]]:
        """Returns every `(task_type, index)`, chief first, then worker, ps, evaluator."""
        return [(job, index) for job, addresses in self.jobs.items()
                for index in range(len(addresses))]

    def as_dict(self) -> dict[str, list[str]]:
        """Returns the cluster as plain lists: the TF_CONFIG "cluster" value."""
        return {job: list(addresses) for job, addresses in self.jobs.items()}

    def ports(self) -> list[int]:
        """Every task's port, in task order."""
        return [int(address.rpartition(":")[2]) for addresses in self.jobs.values()
                for address in addresses]

    @property
    def num_tasks(self) -> int:
        """The number of tasks in all jobs."""
        return sum(len(addresses) for addresses in self.jobs.values())


def _check_count(name: str, value: object, minimum: int, flag: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LaunchError(
            f"{name} ({value!r}) must be an integer of at least {minimum}; "
            f"pass --{flag}={minimum}.")


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
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise LaunchError(f"Number of ports ({n!r}) must be an integer of at least 0.")
    sockets = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    except OSError as error:
        raise LaunchError(
            f"Cannot bind a free port on host {host!r} ({error}); pass a host "
            "name or address of this machine, e.g. --host=localhost.") from error
    finally:
        for sock in sockets:
            sock.close()


def plan_local_cluster(
    *,
    strategy: str,
    num_workers: int,
    num_ps: int = 0,
    host: str = "localhost",
    ports: Sequence[int] | None = None,
) -> ClusterSpec:
    """Plans a cluster whose tasks all run on `host`.

    For "multi_worker" the cluster is `{"worker": [...]}`; worker 0 acts as the
    chief, as TensorFlow's convention is. For "parameter_server" it is
    `{"chief": [1], "worker": [num_workers], "ps": [num_ps]}`. Ports are given
    to tasks in `ClusterSpec.tasks()` order.

    Args:
        strategy: One of `LOCAL_STRATEGIES`.
        num_workers: Number of worker tasks; at least 1.
        num_ps: Number of parameter-server tasks: 0 for "multi_worker", at
            least 1 for "parameter_server".
        host: The host name or address in every task's address.
        ports: One distinct port per task, or None to pick free ones.

    Returns:
        The planned `ClusterSpec`.

    Raises:
        LaunchError: If any argument breaks the rules above.
    """
    if strategy not in LOCAL_STRATEGIES:
        raise LaunchError(
            f"Unknown strategy {strategy!r} for a local cluster. "
            f"Expected one of: {', '.join(LOCAL_STRATEGIES)}.")
    _check_count("num_workers", num_workers, 1, "num_workers")
    _check_count("num_ps", num_ps, 0, "num_ps")
    if strategy == "multi_worker" and num_ps != 0:
        raise LaunchError(
            f"num_ps ({num_ps}) must be 0 for strategy 'multi_worker'; pass "
            "--num_ps=0 or --strategy=parameter_server.")
    if strategy == "parameter_server" and num_ps < 1:
        raise LaunchError(
            f"num_ps ({num_ps}) must be at least 1 for strategy "
            "'parameter_server'; pass --num_ps=1.")
    if not isinstance(host, str) or not host or any(c.isspace() or c == ":" for c in host):
        raise LaunchError(
            f"host ({host!r}) must be a non-empty host name or IPv4 address "
            "without spaces or ':'; e.g. --host=localhost.")
    counts = {"worker": num_workers}
    if strategy == "parameter_server":
        counts = {"chief": 1, "worker": num_workers, "ps": num_ps}
    num_tasks = sum(counts.values())
    if ports is None:
        ports = free_ports(num_tasks, host)
    ports = list(ports)
    if len(ports) != num_tasks:
        raise LaunchError(
            f"Got {len(ports)} ports ({ports}) for {num_tasks} tasks; pass exactly "
            "one port per task, or none to pick free ports.")
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= _MAX_PORT:
            raise LaunchError(f"Port {port!r} must be an integer in 1..{_MAX_PORT}.")
    if len(set(ports)) != len(ports):
        raise LaunchError(f"Ports ({ports}) must be distinct; every task needs its own port.")
    addresses = iter(f"{host}:{port}" for port in ports)
    return ClusterSpec(jobs={job: tuple(next(addresses) for _ in range(count))
                             for job, count in counts.items()})


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
    if task_type not in cluster.jobs:
        raise LaunchError(
            f"Task type {task_type!r} is not a job of the cluster. "
            f"Expected one of: {', '.join(cluster.jobs)}.")
    count = len(cluster.jobs[task_type])
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise LaunchError(
            f"Task index ({index!r}) of job {task_type!r} must be in 0..{count - 1}; "
            f"the job has {count} task(s).")
    return json.dumps({"cluster": cluster.as_dict(),
                       "task": {"type": task_type, "index": index}})
