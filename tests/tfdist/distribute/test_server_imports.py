"""A ps/worker server process imports TensorFlow's runtime, not Keras."""

import os
import socket
import subprocess
import sys

SERVE_ONE_TASK = """
import sys
from tfdist.distribute.server import without_keras
without_keras()
import tensorflow as tf
spec = tf.train.ClusterSpec({"ps": ["localhost:%d"]})
server = tf.distribute.Server(spec, job_name="ps", task_index=0, protocol="grpc", start=True)
print(server.target, sorted(m for m, module in sys.modules.items()
                           if module is not None and m.split(".")[0] == "keras"))
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_a_server_starts_without_importing_keras():
    done = subprocess.run(
        [sys.executable, "-c", SERVE_ONE_TASK % _free_port()],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    target, modules = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert target.startswith("grpc://") and modules == "[]", done.stdout
