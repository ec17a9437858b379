"""tf.data service: read training data through a dispatcher and data workers.

Owns the servers of a tf.data service (run as processes by `python -m
tfdist.data_service dispatcher|worker`, or both inside one process for a
single-process run), the
job every trainer of a run shares, and wrapping a dataset so that its elements
come from the service in `distributed_epoch` mode: the dispatcher hands the
split's examples out to the data workers, each example goes to exactly one
trainer per pass, and whichever trainer asks first gets the next batch.
Building the pipeline the workers run is `tfdist.data.pipeline`'s; starting the server
processes of a local launch is `launch.data_service`'s.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from typing import TYPE_CHECKING

from tfdist.config import ConfigError

if TYPE_CHECKING:
    from launch.tf_config import ClusterConfig

PROCESSING_MODE = "distributed_epoch"


@dataclasses.dataclass(frozen=True)
class ServiceTarget:
    """Where and as which job the trainers of one run read.

    Attributes:
      address: the dispatcher, `grpc://HOST:PORT`.
      job_name: shared by every trainer of the run (they split one job's data).
    """

    address: str
    job_name: str


def normalize_address(address: str, flag: str = "data_service_address") -> str:
    """`host:port` or `grpc://host:port` → `grpc://host:port`."""
    bare = address[len("grpc://") :] if address.startswith("grpc://") else address
    host, _, port = bare.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"{flag} ({address!r}) must be the dispatcher as HOST:PORT or "
            f"grpc://HOST:PORT, e.g. {flag}='node1:5050'."
        )
    return f"grpc://{bare}"


def job_name_for(cluster: ClusterConfig | None) -> str:
    """A job name every task of this run computes alike, and the next run does not.

    Tasks of a cluster share its addresses (new ports each local launch); a single
    process uses its pid and start time.
    """
    if cluster is not None:
        text = repr(sorted((job, tuple(a)) for job, a in cluster.jobs.items()))
    else:
        text = f"{os.getpid()}-{time.time()}"
    return "tfdist-" + hashlib.sha1(text.encode()).hexdigest()[:12]


def distribute(dataset, target: ServiceTarget):
    """`dataset` served by the service: one job, `distributed_epoch` (each example once)."""
    import tensorflow as tf

    return dataset.apply(
        tf.data.experimental.service.distribute(
            processing_mode=PROCESSING_MODE, service=target.address, job_name=target.job_name
        )
    )


class LocalService:
    """A dispatcher and data workers inside this process (single-process runs)."""

    def __init__(self, num_workers: int = 1):
        import tensorflow as tf

        service = tf.data.experimental.service
        self.dispatcher = service.DispatchServer(
            service.DispatcherConfig(port=0, job_gc_check_interval_ms=500, job_gc_timeout_ms=500)
        )
        bare = self.dispatcher.target[len("grpc://") :]
        self.workers: list = [
            service.WorkerServer(service.WorkerConfig(dispatcher_address=bare))
            for _ in range(num_workers)
        ]
        self.address = self.dispatcher.target

    def stop(self) -> None:
        for server in [*self.workers, self.dispatcher]:
            server._stop()


def service_target(*, address: str | None, local_workers: int, cluster: ClusterConfig | None):
    """The run's `(ServiceTarget, LocalService or None)`.

    Args:
      address: the dispatcher of a running service; None starts one in this process
        (a single process only: a task of a TF_CONFIG cluster needs the address, which
        the local launcher passes).
      local_workers: data workers of a service started in this process.
      cluster: this process's TF_CONFIG cluster, or None.
    """
    if address:
        return ServiceTarget(normalize_address(address), job_name_for(cluster)), None
    if cluster is not None:
        raise ConfigError(
            "data_service needs the dispatcher of a running service when TF_CONFIG is set; "
            "start one with `python -m tfdist.data_service dispatcher --port=5050` (and "
            "workers) and pass data_service_address='grpc://HOST:5050'."
        )
    local = LocalService(local_workers)
    return ServiceTarget(local.address, job_name_for(None)), local


# ----- the server processes -------------------------------------------------------------
def serve_dispatcher(port: int) -> None:
    import tensorflow as tf

    service = tf.data.experimental.service
    server = service.DispatchServer(service.DispatcherConfig(port=port))
    print(f"tfdist.data_service: dispatcher serving on {server.target}", flush=True)
    server.join()


def serve_worker(dispatcher_address: str, port: int, host: str) -> None:
    import tensorflow as tf

    service = tf.data.experimental.service
    dispatcher = normalize_address(dispatcher_address, "dispatcher_address")[len("grpc://") :]
    server = service.WorkerServer(
        service.WorkerConfig(
            dispatcher_address=dispatcher, port=port, worker_address=f"{host}:%port%"
        )
    )
    print(f"tfdist.data_service: data worker of {dispatcher} serving", flush=True)
    server.join()
