"""Strategies: one factory from a strategy kind to a ready `tf.distribute` setup.

This module owns choosing and building the strategy (and, for the asynchronous
`parameter_server` kind, its `ClusterCoordinator`), the logical CPU devices
that let `mirrored` run on a machine without GPUs, and the task's role
(chief or not) as the cluster resolver sees it. It builds no model and reads no
data: the caller enters `distribution.strategy.scope()` for that.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from launch.tf_config import ClusterConfig
from tfdist.config import (
    DEFAULT_CPU_REPLICAS,
    STRATEGIES,
    CommunicationConfig,
    ConfigError,
    check_choice,
    check_positive,
)
from tfdist.distribute.cluster import read_tf_config
from tfdist.distribute.communication import collective_options
from tfdist.distribute.partitioning import TablePartitioner
from tfdist.tf_errors import is_server_start_failure


@dataclasses.dataclass(frozen=True)
class TaskRole:
    """This process's place in the cluster, from the cluster resolver."""

    type: str
    index: int
    is_chief: bool


@dataclasses.dataclass(frozen=True)
class Distribution:
    """A built strategy with what the trainer needs to know about it.

    Attributes:
      kind: the resolved strategy kind (never `auto`).
      strategy: the `tf.distribute.Strategy`.
      coordinator: the `ClusterCoordinator` for `parameter_server`, else None.
      role: this process's task.
      num_workers: processes that compute steps.
      input_pipeline_id: this process's input pipeline (`multi_worker`: chief 0, then
        the workers), as `distribute_datasets_from_function` numbers them.
    """

    kind: str
    strategy: tf.distribute.Strategy
    coordinator: tf.distribute.experimental.coordinator.ClusterCoordinator | None
    role: TaskRole
    num_workers: int
    input_pipeline_id: int = 0

    @property
    def num_replicas(self) -> int:
        """Replicas that share one update: all of them for sync kinds, one worker's for PSS."""
        return int(self.strategy.num_replicas_in_sync)

    @property
    def is_async(self) -> bool:
        return self.coordinator is not None

    def scope(self) -> Any:
        """The strategy's scope: build and compile the model inside it."""
        return self.strategy.scope()

    def direct_input_context(self) -> tf.distribute.InputContext | None:
        """The input context when this process feeds one CPU replica (None otherwise).

        Such a process can iterate its dataset directly and pass batches to
        `strategy.run`: a distributed dataset's iterator only adds a copy per batch
        there (measured one process, synthetic + mlp: 13.6-13.9 against 14.9-16.5 CPU
        microseconds per example). GPUs keep it, for its prefetch to the device.
        """
        if self.is_async:
            return None
        try:
            devices = self.strategy.extended.worker_devices
        except RuntimeError:  # The default strategy (a model built outside any scope).
            return tf.distribute.InputContext()
        if len(devices) != 1:
            return None
        if tf.DeviceSpec.from_string(devices[0]).device_type not in (None, "CPU"):
            return None
        return tf.distribute.InputContext(
            num_input_pipelines=self.num_workers,
            input_pipeline_id=self.input_pipeline_id,
            num_replicas_in_sync=self.num_replicas,
        )


def resolve_kind(kind: str, cluster: ClusterConfig | None, num_gpus: int) -> str:
    """Turns `auto` into a concrete kind from TF_CONFIG and the devices present."""
    check_choice("strategy", kind, STRATEGIES)
    if kind != "auto":
        return kind
    if cluster is not None:
        return "parameter_server" if cluster.has_ps else "multi_worker"
    return "one_device" if num_gpus == 1 else "mirrored"


def configure_cpu_devices(count: int) -> list:
    """Splits the CPU into `count` logical devices (before TensorFlow starts); returns names.

    If TensorFlow already started with at least `count` logical CPUs, those are used.
    """
    check_positive("num_devices", count)
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count
        )
    except RuntimeError:
        pass  # Already initialised: use what is there if it is enough.
    names = [device.name for device in tf.config.list_logical_devices("CPU")]
    if len(names) < count:
        raise ConfigError(
            f"num_devices ({count}) CPU replicas were asked for, but TensorFlow already started "
            f"with {len(names)} CPU device(s); call tfdist.configure_cpu_devices({count}) "
            "before anything else uses TensorFlow, or ask for fewer devices."
        )
    return names[:count]


def _mirrored_devices(num_devices: int | None) -> list:
    if tf.config.list_physical_devices("GPU"):  # Physical: listing logical ones starts TF.
        gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
        if num_devices is not None and num_devices > len(gpus):
            raise ConfigError(
                f"num_devices ({num_devices}) is more than the {len(gpus)} GPU(s) visible; "
                f"pass num_devices={len(gpus)} or fewer."
            )
        return gpus[:num_devices] if num_devices else gpus
    return configure_cpu_devices(num_devices or DEFAULT_CPU_REPLICAS)


def _resolver(cluster: ClusterConfig) -> Any:
    spec = tf.train.ClusterSpec({job: list(addresses) for job, addresses in cluster.jobs.items()})
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        spec, task_type=cluster.task.type, task_id=cluster.task.index, rpc_layer="grpc"
    )


def _port_in_use(address: str) -> bool:
    import socket

    host, _, port = address.rpartition(":")
    with socket.socket() as probe:
        try:
            probe.bind(("", int(port)))
        except OSError:
            return True
    return False


def server_start_error(cluster: ClusterConfig) -> ConfigError:
    """The one-line error for a task whose gRPC server could not start."""
    address = cluster.jobs[cluster.task.type][cluster.task.index]
    cause = (
        "the port is already in use"
        if _port_in_use(address)
        else "the address cannot be bound here"
    )
    return ConfigError(
        f"could not start the gRPC server of task {cluster.task.name} on {address}: {cause}; "
        "stop what holds it or give this task another port in TF_CONFIG."
    )


def _role_from_resolver(resolver: Any) -> TaskRole:
    task_type, index = resolver.task_type, resolver.task_id or 0
    jobs = resolver.cluster_spec().jobs
    is_chief = task_type == "chief" or (
        task_type == "worker" and index == 0 and "chief" not in jobs
    )
    return TaskRole(task_type, index, is_chief)


_LOCAL_ROLE = TaskRole("worker", 0, True)
# What a builder returns: strategy, coordinator, this task's role, workers, input pipeline.
_Built = tuple[Any, Any, TaskRole, int, int]


def _one_device(**_: Any) -> _Built:
    gpus = tf.config.list_logical_devices("GPU")
    device = gpus[0].name if gpus else "/cpu:0"
    return tf.distribute.OneDeviceStrategy(device), None, _LOCAL_ROLE, 1, 0


def _mirrored(*, num_devices: int | None, **_: Any) -> _Built:
    devices = _mirrored_devices(num_devices)
    # Logical CPUs sum on one device: collective ops there draw instance keys per device,
    # so a second model in the same process could pair one replica's all-reduce with
    # another's of a different size ("Shape mismatch in the collective instance").
    on_cpus = all(tf.DeviceSpec.from_string(d).device_type == "CPU" for d in devices)
    strategy = tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice() if on_cpus else None
    )
    return strategy, None, _LOCAL_ROLE, 1, 0


def _multi_worker(
    *, cluster: ClusterConfig | None, communication: CommunicationConfig, **_: Any
) -> _Built:
    options = collective_options(communication)
    if cluster is None:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        return strategy, None, _LOCAL_ROLE, 1, 0
    if cluster.has_ps:
        raise ConfigError(
            "strategy 'multi_worker' cannot run in a TF_CONFIG cluster that has 'ps' tasks; "
            "use strategy='parameter_server' or remove the ps job."
        )
    resolver = _resolver(cluster)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver, communication_options=options
        )
    except tf.errors.UnknownError as error:
        if not is_server_start_failure(error):
            raise
        raise server_start_error(cluster) from None
    role = _role_from_resolver(resolver)
    return strategy, None, role, cluster.num_workers, _pipeline_id(role, cluster)


def _pipeline_id(role: TaskRole, cluster: ClusterConfig) -> int:
    """The chief's input pipeline is 0; workers follow (TensorFlow's id_in_cluster)."""
    if role.type == "chief":
        return 0
    return role.index + (1 if cluster.jobs.get("chief") else 0)


def _parameter_server(*, cluster: ClusterConfig | None, ps_shards: int | None, **_: Any) -> _Built:
    if cluster is None or not cluster.has_ps:
        raise ConfigError(
            "strategy 'parameter_server' needs a TF_CONFIG cluster with 'chief', 'worker' and "
            "'ps' jobs; start one with the launcher (`python -m launch --strategy=parameter_server "
            "--num_workers=2 --num_ps=1 -- COMMAND`) or set TF_CONFIG."
        )
    if cluster.task.type != "chief":
        raise ConfigError(
            f"task {cluster.task.name} of a parameter_server cluster runs a server, not the "
            "training loop; start it with `python -m tfdist.server` (the trainer CLI does this)."
        )
    num_ps = len(cluster.jobs["ps"])
    shards = num_ps if ps_shards is None else ps_shards
    if shards > num_ps:
        raise ConfigError(
            f"ps_shards ({shards}) is more than the {num_ps} ps task(s); use at most "
            f"{num_ps} or give the cluster {shards} ps tasks."
        )
    partitioner = TablePartitioner(max_shards=shards) if shards > 1 else None
    resolver = _resolver(cluster)
    try:
        strategy = tf.distribute.experimental.ParameterServerStrategy(
            resolver, variable_partitioner=partitioner
        )
        coordinator = tf.distribute.experimental.coordinator.ClusterCoordinator(strategy)
    except tf.errors.UnknownError as error:
        if not is_server_start_failure(error):
            raise
        raise server_start_error(cluster) from None
    return strategy, coordinator, _role_from_resolver(resolver), cluster.num_workers, 0


_BUILDERS: dict[str, Callable[..., _Built]] = {
    "one_device": _one_device,
    "mirrored": _mirrored,
    "multi_worker": _multi_worker,
    "parameter_server": _parameter_server,
}


_FROM_ENVIRONMENT = object()
_MADE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def distribution_of(strategy: tf.distribute.Strategy) -> Distribution | None:
    """The Distribution `make_strategy` built around `strategy`, if it did."""
    return _MADE.get(strategy)


def make_strategy(
    kind: str = "auto",
    *,
    num_devices: int | None = None,
    cluster: Any = _FROM_ENVIRONMENT,
    communication: CommunicationConfig | None = None,
    ps_shards: int | None = None,
) -> Distribution:
    """Builds the strategy `kind` for this process.

    Args:
      kind: one of `auto`, `one_device`, `mirrored`, `multi_worker`,
        `parameter_server`.
      num_devices: replicas for `mirrored` (GPUs, else logical CPUs; default all
        GPUs or 2 CPUs).
      cluster: the parsed TF_CONFIG; by default this process's (`tfdist.read_tf_config()`,
        so a script started by `python -m launch` finds its cluster); None: no cluster.
      communication: collective options for `multi_worker` (implementation, pack
        size, timeout); the default config when None.
      ps_shards: `parameter_server`: split embedding tables into this many parts
        across the ps tasks (default: one part per ps task; 1 keeps them whole).

    Returns:
      A Distribution; `coordinator` is set for `parameter_server`.
    """
    communication = communication or CommunicationConfig()
    if cluster is _FROM_ENVIRONMENT:
        cluster = read_tf_config()
    check_positive("num_devices", num_devices, allow_none=True)
    check_positive("ps_shards", ps_shards, allow_none=True)
    resolved = resolve_kind(kind, cluster, len(tf.config.list_physical_devices("GPU")))
    strategy, coordinator, role, num_workers, pipeline_id = _BUILDERS[resolved](
        num_devices=num_devices, cluster=cluster, communication=communication, ps_shards=ps_shards
    )
    distribution = Distribution(
        kind=resolved,
        strategy=strategy,
        coordinator=coordinator,
        role=role,
        num_workers=num_workers,
        input_pipeline_id=pipeline_id,
    )
    _MADE[strategy] = distribution
    return distribution


def _resolved_role(resolver: Any) -> TaskRole:
    """This task's role from a strategy's cluster resolver (a single task without one)."""
    spec = resolver.cluster_spec() if resolver is not None else None
    if not spec or not spec.jobs:
        return _LOCAL_ROLE
    return _role_from_resolver(resolver)


def adopt(strategy: tf.distribute.Strategy) -> Distribution:
    """A Distribution around a strategy the user built with TensorFlow's own classes.

    `OneDeviceStrategy`, `MirroredStrategy`, `MultiWorkerMirroredStrategy` (its cluster
    from its resolver, as TensorFlow read TF_CONFIG) and `ParameterServerStrategy` (whose
    `ClusterCoordinator` is made here, as Keras' tutorial leaves to `model.fit`), so the
    TensorFlow tutorials run with `model.fit` → `tfdist.fit(model, ...)` changed alone.

    Raises:
      ConfigError: for another kind of strategy (TPUStrategy, CentralStorageStrategy).
    """
    found = distribution_of(strategy)
    if found is not None:
        return found
    # ParameterServerStrategy keeps its resolver private (its `cluster_resolver` is None).
    resolver = getattr(strategy, "cluster_resolver", None) or getattr(
        strategy, "_cluster_resolver", None
    )
    if isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy):
        coordinator = tf.distribute.experimental.coordinator.ClusterCoordinator(strategy)
        jobs = resolver.cluster_spec().as_dict() if resolver is not None else {}
        workers = len(jobs.get("worker", ()))
        kind, role, pipeline = "parameter_server", _resolved_role(resolver), 0
        distribution = Distribution(kind, strategy, coordinator, role, max(1, workers), pipeline)
    elif isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        role = _resolved_role(resolver)
        jobs = resolver.cluster_spec().as_dict() if resolver is not None else {}
        workers = len(jobs.get("worker", ())) + len(jobs.get("chief", ()))
        pipeline = 0 if role.type == "chief" else role.index + (1 if jobs.get("chief") else 0)
        distribution = Distribution("multi_worker", strategy, None, role, max(1, workers), pipeline)
    elif isinstance(strategy, tf.distribute.MirroredStrategy):
        distribution = Distribution("mirrored", strategy, None, _LOCAL_ROLE, 1, 0)
    elif isinstance(strategy, tf.distribute.OneDeviceStrategy):
        distribution = Distribution("one_device", strategy, None, _LOCAL_ROLE, 1, 0)
    else:
        raise ConfigError(
            f"the model was built under {type(strategy).__name__}, which tfdist does not "
            "run; build it under OneDeviceStrategy, MirroredStrategy, "
            "MultiWorkerMirroredStrategy or ParameterServerStrategy, or tfdist.make_strategy()."
        )
    _MADE[strategy] = distribution
    return distribution
