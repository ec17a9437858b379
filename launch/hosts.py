"""Several hosts: a cluster from a host list, and what each host runs.

This module owns turning a list of "host:port" addresses (`plan_hosts_cluster`)
or a cluster-spec JSON file (`read_cluster_spec`) into a `ClusterSpec`, and
writing down what each task must run on its host: one shell line per task
(`task_lines`), or one env file per task (`env_files`). It is pure: it starts
nothing (a host's own tasks are run by `launch.launcher.run_launch`) and never
reads `os.environ`.

Nothing here assumes a shared file system; only the trainer's `--model_dir`
must be one every task can reach (or a `gs://`/`hdfs://` path).
"""

import json
import shlex
from collections.abc import Sequence

from launch.errors import LaunchError, check_count
from launch.gpus import assign_gpus
from launch.tf_config import ClusterSpec, check_layout, check_strategy, tf_config_json


def check_fits(cluster: ClusterSpec, strategy: str) -> ClusterSpec:
    """Returns `cluster` if its jobs fit `strategy`; raises `LaunchError` otherwise."""
    check_strategy(strategy, where="a multi-host cluster")
    return check_layout(cluster, strategy, fix="fix the cluster spec or --strategy")


def parse_hosts(text: str) -> tuple[str, ...]:
    """Returns the addresses of a comma-separated "host:port" list.

    Raises:
        LaunchError: If an entry is not "host:port" with a port in 1..65535.
    """
    addresses = tuple(part.strip() for part in str(text).split(","))
    for address in addresses:
        host, sep, port = address.rpartition(":")
        if (
            not sep
            or not host
            or not port.isdigit()
            or not 1 <= int(port) <= 65535
            or any(char.isspace() for char in host)
        ):
            raise LaunchError(
                f"hosts entry {address!r} of {text!r} is not 'host:port' with a port in "
                "1..65535; pass e.g. --hosts=node1:2222,node2:2222."
            )
    return addresses


def plan_hosts_cluster(*, strategy: str, hosts: Sequence[str], num_ps: int = 0) -> ClusterSpec:
    """Plans a cluster over `hosts`, one task per address.

    Under "multi_worker" every address is a worker (worker 0 acts as chief).
    Under "parameter_server" the first address is the chief, the next
    `num_ps` are ps tasks and the rest are workers.

    Raises:
        LaunchError: If the addresses cannot form that cluster.
    """
    check_strategy(strategy, where="a multi-host cluster")
    hosts = list(hosts)
    check_count("num_ps", num_ps, 0, fix="pass --num_ps=0")
    if strategy == "multi_worker" and num_ps:
        raise LaunchError(
            f"num_ps ({num_ps}) must be 0 for strategy 'multi_worker'; pass --num_ps=0 "
            "or --strategy=parameter_server."
        )
    if strategy == "parameter_server":
        if num_ps < 1 or len(hosts) < num_ps + 2:
            raise LaunchError(
                f"Strategy 'parameter_server' with num_ps ({num_ps}) needs a chief, at least "
                f"1 ps and at least 1 worker address, so at least {max(num_ps, 1) + 2}; got "
                f"{len(hosts)}. Pass --num_ps=1 and more --hosts."
            )
        jobs = {
            "chief": tuple(hosts[:1]),
            "ps": tuple(hosts[1 : 1 + num_ps]),
            "worker": tuple(hosts[1 + num_ps :]),
        }
    else:
        jobs = {"worker": tuple(hosts)}
    return check_fits(ClusterSpec(jobs=jobs), strategy)


def read_cluster_spec(text: str, *, source: str, strategy: str) -> ClusterSpec:
    """Parses a cluster-spec JSON document such as `{"worker": [...], "ps": [...]}`.

    Args:
        text: The JSON text.
        source: Where it came from (a file name), for error messages.
        strategy: The strategy the cluster must fit.

    Raises:
        LaunchError: If it is not valid JSON of job names to address lists,
            or does not fit `strategy`.
    """
    try:
        jobs = json.loads(text)
    except json.JSONDecodeError as error:
        raise LaunchError(
            f"Cluster spec {source} is not valid JSON ({error.msg} at line {error.lineno}); "
            'expected e.g. {"worker": ["node1:2222", "node2:2222"]}.'
        ) from None
    except RecursionError:
        raise LaunchError(
            f"Cluster spec {source} is nested too deeply to be a cluster spec; expected e.g. "
            '{"worker": ["node1:2222", "node2:2222"]}.'
        ) from None
    if not isinstance(jobs, dict):
        raise LaunchError(
            f"Cluster spec {source} must be a JSON object of job name to 'host:port' lists, "
            'e.g. {"chief": ["a:2222"], "worker": ["b:2222"], "ps": ["c:2222"]}.'
        )
    return check_fits(ClusterSpec(jobs=jobs), strategy)


def host_of(address: str) -> str:
    """Returns the host of a "host:port" address."""
    return address.rpartition(":")[0]


def cluster_hosts(cluster: ClusterSpec) -> list[str]:
    """Returns the distinct hosts of `cluster`, in task order."""
    hosts = [host_of(address) for addresses in cluster.jobs.values() for address in addresses]
    return list(dict.fromkeys(hosts))


def tasks_on_host(cluster: ClusterSpec, host: str) -> list[tuple[str, int]]:
    """Returns the `(task_type, index)` of the tasks whose address is on `host`."""
    return [
        (job, index) for job, index in cluster.tasks() if host_of(cluster.jobs[job][index]) == host
    ]


def _task_variables(
    cluster: ClusterSpec, strategy: str, gpus_per_worker: int
) -> dict[tuple[str, int], dict[str, str]]:
    variables = {task: {"TF_CONFIG": tf_config_json(cluster, *task)} for task in cluster.tasks()}
    for host in cluster_hosts(cluster):
        tasks = tasks_on_host(cluster, host)
        # Each host is assumed to have GPUs 0..N-1, enough for its workers.
        devices = (
            assign_gpus(
                strategy=strategy,
                tasks=tasks,
                gpu_ids=[str(number) for number in range(len(tasks) * gpus_per_worker)],
                gpus_per_worker=gpus_per_worker,
            )
            if gpus_per_worker
            else {}
        )
        for task, value in devices.items():
            variables[task]["CUDA_VISIBLE_DEVICES"] = value
    return variables


def task_lines(
    cluster: ClusterSpec, *, strategy: str, command: Sequence[str], gpus_per_worker: int = 0
) -> list[str]:
    """Returns one shell line per task: `TF_CONFIG='...' COMMAND`, in task order.

    With `gpus_per_worker`, workers also get CUDA_VISIBLE_DEVICES (GPUs 0, 1,
    ... of their host, in task order) and ps tasks and a parameter_server chief
    `CUDA_VISIBLE_DEVICES=''`.
    """
    check_fits(cluster, strategy)
    return [
        " ".join(f"{key}={shlex.quote(value)}" for key, value in variables.items())
        + " "
        + shlex.join(command)
        for variables in _task_variables(cluster, strategy, gpus_per_worker).values()
    ]


def env_files(
    cluster: ClusterSpec, *, strategy: str, command: Sequence[str], gpus_per_worker: int = 0
) -> dict[str, str]:
    """Returns one env file per task: file name (e.g. "worker-0.env") to its text.

    Each file holds shell-quoted `KEY='value'` lines, headed by comments that
    say where the task runs and how to start it.
    """
    check_fits(cluster, strategy)
    files = {}
    for (job, index), variables in _task_variables(cluster, strategy, gpus_per_worker).items():
        name = f"{job}-{index}.env"
        lines = [
            f"# Task {job}:{index} of a {strategy} cluster; run on host "
            f"{host_of(cluster.jobs[job][index])}:",
            f"#   set -a; . ./{name}; set +a; {shlex.join(command)}",
        ]
        lines += [f"{key}={shlex.quote(value)}" for key, value in variables.items()]
        files[name] = "\n".join(lines) + "\n"
    return files


def open_ports_warning(cluster: ClusterSpec) -> str:
    """Returns a one-line warning naming every port the cluster opens."""
    ports = ", ".join(
        f"{address} ({job}:{index})"
        for job, index in cluster.tasks()
        for address in [cluster.jobs[job][index]]
    )
    return (
        f"warning: TensorFlow's gRPC servers listen on all network interfaces without "
        f"authentication; this cluster opens {ports}. Allow these ports only between "
        "the cluster's hosts, on a network you trust."
    )
