"""The launch plan: one frozen `LaunchSpec` in, what to run out, nothing started.

This module owns planning a launch, whatever starts it (`python -m launch`, its
`hosts --this_host`, the trainer's own local cluster, the scaling report): the
cluster on one host (`plan_local_cluster`), and `plan_launch`, which turns a
`LaunchSpec` into a `LaunchPlan`: the cluster, one `TaskLaunch` per task to
run here (argv + env, from `launch.task_plan.plan_local_launch`), whether the
network can be isolated, and the one-line description the launcher prints.
It only prepares; running a plan is `launch.launcher`'s job (as Accelerate keeps
preparing a launch apart from spawning it), and what happens when a task fails
`launch.restarts`'s. The TF_CONFIG schema and strategy layouts are
`launch.tf_config`'s. Standard library only.
"""

import dataclasses
import ipaddress
import shlex
import sys
import types
from collections.abc import Mapping, Sequence

from launch.errors import LaunchError, check_count
from launch.task_launch import TaskLaunch
from launch.task_plan import THREAD_ENV_VARS, plan_local_launch
from launch.tf_config import (
    MAX_PORT,
    STRATEGY_LAYOUTS,
    ClusterSpec,
    check_layout,
    check_strategy,
    free_ports,
)


def tfdist_server_command(python: str = sys.executable) -> tuple[str, ...]:
    """Returns the command of tfdist's ps/worker server: `python -m tfdist.server`."""
    return (python, "-m", "tfdist.server")


def _check_host(host: object) -> str:
    if not isinstance(host, str) or not host or any(c.isspace() or c == ":" for c in host):
        raise LaunchError(
            f"host ({host!r}) must be a non-empty host name or IPv4 address "
            "without spaces or ':'; e.g. --host=localhost."
        )
    return host


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
        strategy: One of `launch.tf_config.CLUSTER_STRATEGIES`.
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
    check_strategy(strategy, where="a local cluster")
    check_count("num_workers", num_workers, 1, fix="pass --num_workers=1")
    check_count("num_ps", num_ps, 0, fix="pass --num_ps=0")
    if strategy == "multi_worker" and num_ps != 0:
        raise LaunchError(
            f"num_ps ({num_ps}) must be 0 for strategy 'multi_worker'; pass "
            "--num_ps=0 or --strategy=parameter_server."
        )
    if strategy == "parameter_server" and num_ps < 1:
        raise LaunchError(
            f"num_ps ({num_ps}) must be at least 1 for strategy "
            "'parameter_server'; pass --num_ps=1."
        )
    _check_host(host)
    counts = {"worker": num_workers}
    if strategy == "parameter_server":
        counts = {"chief": 1, "worker": num_workers, "ps": num_ps}
    num_tasks = sum(counts.values())
    ports = free_ports(num_tasks, host) if ports is None else list(ports)
    if len(ports) != num_tasks:
        raise LaunchError(
            f"Got {len(ports)} ports ({ports}) for {num_tasks} tasks; pass exactly "
            "one port per task, or none to pick free ports."
        )
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= MAX_PORT:
            raise LaunchError(f"Port {port!r} must be an integer in 1..{MAX_PORT}.")
    if len(set(ports)) != len(ports):
        raise LaunchError(f"Ports ({ports}) must be distinct; every task needs its own port.")
    addresses = iter(f"{host}:{port}" for port in ports)
    cluster = ClusterSpec(
        jobs={job: tuple(next(addresses) for _ in range(count)) for job, count in counts.items()}
    )
    return check_layout(cluster, strategy, fix="plan it with plan_local_cluster")


def _tuple(value: object) -> object:
    """A list as a tuple (hashable, read-only); anything else as it is, for the checks."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


@dataclasses.dataclass(frozen=True)
class LaunchSpec:
    """What to launch on this machine: the blueprint `plan_launch` turns into tasks.

    Attributes:
        strategy: One of `launch.tf_config.CLUSTER_STRATEGIES`.
        command: The command of the tasks that end the launch: every worker
            (and chief) under "multi_worker"; the chief under "parameter_server".
        server_command: The command of the ps and worker tasks (servers) under
            "parameter_server"; None runs `command` there too (a command that
            serves by itself, as `python -m tfdist.train` does).
            `tfdist_server_command()` is tfdist's server.
        num_workers: Worker tasks of a cluster planned here; at least 1.
        num_ps: ps tasks of a cluster planned here: 0 for "multi_worker", at
            least 1 for "parameter_server".
        host: The host in every address of a cluster planned here.
        ports: One port per task of a cluster planned here; None picks free ones.
        cluster: A cluster planned elsewhere (e.g. by `launch.hosts`); then
            `num_workers`, `num_ps`, `host` and `ports` are not used.
        tasks: The `(task_type, index)` of the cluster's tasks to run here;
            None runs them all. When only servers run here, they run as
            ordinary tasks (until they exit or the launcher is stopped).
        base_env: The environment every task starts from; not modified.
        cpu_count: CPUs to divide among the tasks; None: those this process may use.
        gpus_per_worker: GPUs of each worker task (see `launch.gpus`); 0 leaves
            CUDA_VISIBLE_DEVICES as inherited.
        gpu_ids: This machine's GPU ids (`launch.visible_gpu_ids`); None when
            unknown, which allows only `gpus_per_worker` 0.
        isolate_network: Run the tasks in one private network namespace; done
            only when the whole cluster runs here with loopback addresses.
        extra_tasks: Server tasks outside the TensorFlow cluster, started first
            (e.g. a tf.data service from `launch.data_service`).
    """

    strategy: str
    command: Sequence[str]
    server_command: Sequence[str] | None = None
    num_workers: int = 1
    num_ps: int = 0
    host: str = "localhost"
    ports: Sequence[int] | None = None
    cluster: ClusterSpec | None = None
    tasks: Sequence[tuple[str, int]] | None = None
    base_env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    cpu_count: int | None = None
    gpus_per_worker: int = 0
    gpu_ids: Sequence[str] | None = None
    isolate_network: bool = True
    extra_tasks: Sequence[TaskLaunch] = ()

    def __post_init__(self) -> None:
        for name in ("command", "server_command", "ports", "gpu_ids", "extra_tasks"):
            object.__setattr__(self, name, _tuple(getattr(self, name)))
        if isinstance(self.tasks, (list, tuple)):
            object.__setattr__(self, "tasks", tuple(_tuple(task) for task in self.tasks))
        if isinstance(self.base_env, Mapping):
            object.__setattr__(self, "base_env", types.MappingProxyType(dict(self.base_env)))


@dataclasses.dataclass(frozen=True)
class LaunchPlan:
    """What to run for a `LaunchSpec`; nothing is started yet.

    Attributes:
        spec: The spec planned.
        cluster: The TensorFlow cluster (all of it, also tasks that run elsewhere).
        launches: The tasks to run here: `spec.extra_tasks`, then the cluster's.
        whole_cluster: Whether every task of the cluster runs here.
        isolate_network: Whether to run the tasks in a private network namespace.
        description: One line saying what starts: each task and its address,
            what the servers run, threads and GPUs of each task.
    """

    spec: LaunchSpec
    cluster: ClusterSpec
    launches: tuple[TaskLaunch, ...]
    whole_cluster: bool
    isolate_network: bool
    description: str


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine's loopback interface ("localhost", 127.x.x.x, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _describe(
    spec: LaunchSpec, cluster: ClusterSpec, launches: Sequence[TaskLaunch], whole_cluster: bool
) -> str:
    tasks = ", ".join(
        f"{launch.name} at {cluster.address(launch.task_type, launch.index)}" for launch in launches
    )
    line = (
        f"starting {spec.strategy} cluster: {tasks}"
        if whole_cluster
        else f"starting {tasks} of a {spec.strategy} cluster of {cluster.num_tasks} tasks"
    )
    if spec.extra_tasks:
        line += f"; also {', '.join(launch.name for launch in spec.extra_tasks)}"
    lead = next((launch for launch in launches if launch.task_type != "ps"), launches[0])
    servers = [launch for launch in launches if launch.is_server]
    if servers and servers[0].argv != lead.argv:
        line += f"; servers run {shlex.join(servers[0].argv)}"
    line += "; compute tasks get " + ", ".join(f"{key}={lead.env[key]}" for key in THREAD_ENV_VARS)
    devices = [
        f"{launch.name}={launch.env['CUDA_VISIBLE_DEVICES'] or 'CPU'}"
        for launch in launches
        if "CUDA_VISIBLE_DEVICES" in launch.env
        and launch.env["CUDA_VISIBLE_DEVICES"] != spec.base_env.get("CUDA_VISIBLE_DEVICES")
    ]
    return line + (f"; CUDA_VISIBLE_DEVICES: {', '.join(devices)}" if devices else "")


def plan_launch(spec: LaunchSpec) -> LaunchPlan:
    """Plans `spec`: the cluster (free ports unless given) and each task's argv and env.

    Starts nothing and reads no environment: every input is in `spec`. All
    checks run here, before anything is started.

    Args:
        spec: What to launch.

    Returns:
        The `LaunchPlan`.

    Raises:
        LaunchError: If the spec breaks a rule (one line naming the value and the fix).
    """
    if not isinstance(spec, LaunchSpec):
        raise LaunchError(f"spec ({spec!r}) must be a LaunchSpec.")
    if spec.cluster is None:
        cluster = plan_local_cluster(
            strategy=spec.strategy,
            num_workers=spec.num_workers,
            num_ps=spec.num_ps,
            host=spec.host,
            ports=spec.ports,
        )
    elif isinstance(spec.cluster, ClusterSpec):
        cluster = check_layout(
            spec.cluster,
            spec.strategy,
            fix=f"fix the cluster spec or the strategy (one of: {', '.join(STRATEGY_LAYOUTS)})",
        )
    else:
        raise LaunchError(
            f"cluster ({spec.cluster!r}) must be a ClusterSpec or None (plan "
            "one on host); plan one with plan_local_cluster or launch.hosts."
        )
    extra = spec.extra_tasks
    if not all(isinstance(task, TaskLaunch) for task in extra):
        raise LaunchError(
            f"extra_tasks ({extra!r}) must be TaskLaunch objects, e.g. "
            "launch.data_service.plan_data_service(...).launches."
        )
    launches = plan_local_launch(
        cluster=cluster,
        strategy=spec.strategy,
        command=spec.command,
        server_command=spec.server_command,
        base_env=spec.base_env,
        cpu_count=spec.cpu_count,
        gpus_per_worker=spec.gpus_per_worker,
        gpu_ids=spec.gpu_ids,
        tasks=spec.tasks,
    )
    whole_cluster = len(launches) == cluster.num_tasks
    if not whole_cluster and all(launch.is_server for launch in launches):
        launches = [dataclasses.replace(launch, is_server=False) for launch in launches]
    loopback = all(
        is_loopback(address.rpartition(":")[0])
        for addresses in cluster.jobs.values()
        for address in addresses
    )
    return LaunchPlan(
        spec=spec,
        cluster=cluster,
        launches=(*extra, *launches),
        whole_cluster=whole_cluster,
        isolate_network=bool(spec.isolate_network) and whole_cluster and loopback,
        description=_describe(spec, cluster, launches, whole_cluster),
    )
