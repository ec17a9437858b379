"""TF_CONFIG as tfdist reads it: the one place tfdist reads the environment variable.

The schema (task types, `ClusterSpec`, `TaskSpec`, the parsed `ClusterConfig`,
its JSON both ways) is `launch.tf_config`'s, shared with the launchers that write
TF_CONFIG; this module only reads `TF_CONFIG` from the environment and turns the
schema's `LaunchError` into tfdist's `ConfigError` with the same one-line
message ("TF_CONFIG is malformed: ... Expected JSON like ..."). Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from launch.errors import LaunchError
from launch.tf_config import ClusterConfig
from launch.tf_config import parse_tf_config as _parse
from tfdist.config import ConfigError


def parse_tf_config(text: str | None) -> ClusterConfig | None:
    """Parses TF_CONFIG text (`launch.tf_config.parse_tf_config`); None or blank: no cluster.

    Raises:
        ConfigError: The schema's one-line message, if the text is malformed.
    """
    try:
        return _parse(text)
    except LaunchError as error:
        raise ConfigError(str(error)) from None


def read_tf_config(environ: Mapping[str, str] | None = None) -> ClusterConfig | None:
    """Reads and parses `TF_CONFIG` from `environ` (default `os.environ`); None if unset.

    Raises:
        ConfigError: If TF_CONFIG is set but malformed.
    """
    environ = os.environ if environ is None else environ
    return parse_tf_config(environ.get("TF_CONFIG"))
