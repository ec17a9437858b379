"""`python -m tfdist.server`: run this process's ps or worker server from TF_CONFIG.

Owns the command line of a parameter_server task's server; the server itself is
`tfdist.distribute.server`.
"""

from __future__ import annotations

import sys

from tfdist.config import ConfigError
from tfdist.distribute.cluster import read_tf_config
from tfdist.distribute.server import serve, without_keras


def main() -> int:
    without_keras()  # A server needs TensorFlow's runtime, not Keras.
    try:
        cluster = read_tf_config()
        if cluster is None:
            raise ConfigError("TF_CONFIG is not set; tfdist.server needs the cluster and its task.")
        serve(cluster)
    except ConfigError as error:
        print(f"tfdist.server: error: {error}", file=sys.stderr)
        return 2
    return 0
