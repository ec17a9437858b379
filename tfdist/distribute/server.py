"""The server of a parameter_server task.

Owns running this process's `tf.distribute.Server` for a ps or worker task of
a ParameterServerStrategy cluster, as TF_CONFIG describes it, until it is
stopped. The chief (coordinator) runs the trainer instead. A server imports only
what serving needs: no Keras (`without_keras`).
"""

from __future__ import annotations

import sys

from launch.tf_config import ClusterConfig
from tfdist.config import ConfigError

# TensorFlow's own import loads Keras' optimizers eagerly (for SavedModel registrations;
# it skips them on ImportError): 4.3 of 16.2 s under `python -X importtime` here, and a
# server runs no Keras code (the chief sends it graphs of TensorFlow ops).
_KERAS_PRELOAD = "keras.src.optimizers"


def without_keras() -> None:
    """Before TensorFlow is imported, makes its eager Keras import a no-op in this process.

    For server processes only: Keras cannot be imported in this process afterwards.
    """
    if "tensorflow" not in sys.modules and "keras" not in sys.modules:
        sys.modules.setdefault(_KERAS_PRELOAD, None)


def serve(cluster: ClusterConfig) -> None:
    """Starts this task's gRPC server and blocks until the process is stopped."""
    import tensorflow as tf

    if cluster.task.type not in ("ps", "worker"):
        raise ConfigError(
            f"task {cluster.task.name} is not a ps or worker task; only those run a server. "
            "The chief runs `python -m tfdist.train`."
        )
    spec = tf.train.ClusterSpec({job: list(addresses) for job, addresses in cluster.jobs.items()})
    try:
        server = tf.distribute.Server(
            spec,
            job_name=cluster.task.type,
            task_index=cluster.task.index,
            protocol="grpc",
            start=True,
        )
    except tf.errors.UnknownError:
        from tfdist.distribute.strategies import server_start_error

        raise server_start_error(cluster) from None
    print(f"tfdist.server: {cluster.task.name} serving on {server.target}", flush=True)
    server.join()
