"""Fallout: the error lines a task prints about a peer that died and is being restarted.

When a parameter_server worker dies and is restarted in place, the chief carries on, and
TensorFlow logs an error record each time it cannot reach that worker, e.g.

    E0000 00:00:1796490240.060157 6864 context.cc:873] Failed to register function
    remotely due to failed to connect to all addresses; last error: UNKNOWN:
    ipv4:127.0.0.1:60429: Failed to connect to remote host: Connection refused

followed by gRPC's continuation lines ("Additional GRPC error information from remote
target /job:worker/replica:0/task:1 ..."). This module owns telling those lines apart,
line by line, from the rest of the task's output: a `FalloutFilter` per task marks an
error record (a C++ or absl log record of level E) that names a dead peer (its
"/job:worker/replica:0/task:1" device path or its address's port) or, while a peer is
dead, says a connection was lost (`says_connection_lost`), and the continuation lines
that follow it. Every other line (the training's progress, other warnings and errors, a
Python traceback) is not fallout. Deciding when the filter applies is
`launch.quiet_peers`'. Standard library only.
"""

import re
from collections.abc import Iterable

from launch.errors import LaunchError
from launch.noise import LOG_RECORD
from launch.task_launch import TaskLaunch
from launch.tf_config import parse_tf_config

# What gRPC says when a peer's connection is gone: an error record saying it, while a peer
# is down, is about that peer even where only its continuation lines name it.
CONNECTION_LOST = (
    "Connection reset by peer",
    "Connection refused",
    "Socket closed",
    "failed to connect to all addresses",
)
# How gRPC's error text, appended to a TensorFlow error record, goes on over more lines.
GRPC_CONTINUATIONS = (
    "Additional GRPC error information from remote target",
    ":UNKNOWN:Error received from peer",
    "This could happen if the remote target has been disconnected from the client.",
)


def peer_names(launch: TaskLaunch) -> tuple[str, ...]:
    """How TensorFlow's errors name the task: its device path and its address's port.

    E.g. ("/job:worker/replica:0/task:1", ":60429") for a worker:1 whose TF_CONFIG gives
    it localhost:60429; only the device path when its env has no usable TF_CONFIG.
    """
    device = f"/job:{launch.task_type}/replica:0/task:{launch.index}"
    try:
        config = parse_tf_config(launch.env.get("TF_CONFIG"))
        address = config.cluster.address(launch.task_type, launch.index) if config else None
    except LaunchError:
        address = None
    if address is None or ":" not in address:
        return (device,)
    return device, ":" + address.rpartition(":")[2]


def says_connection_lost(line: str) -> bool:
    """Whether `line` is an error record saying that a connection was lost (`CONNECTION_LOST`).

    What a task logs first when its peer dies, often before the launcher has seen it die.
    """
    return (
        line.startswith("E")
        and LOG_RECORD.match(line) is not None
        and any(lost in line for lost in CONNECTION_LOST)
    )


def _names_any(line: str, names: Iterable[str]) -> bool:
    """Whether `line` holds one of `names`, a port only when no digit follows it."""
    return any(re.search(re.escape(name) + r"(?!\d)", line) for name in names)


class FalloutFilter:
    """Tells, line by line, one task's error records about dead peers from its other output.

    Keeps whether the previous line was fallout, so that gRPC's continuation lines of
    a record are fallout too. One per task: lines must come in the task's order.
    """

    def __init__(self) -> None:
        self._in_record = False

    def is_fallout(self, line: str, dead_peers: Iterable[str]) -> bool:
        """Whether `line` is an error record about one of `dead_peers` or its continuation.

        An error record is about a dead peer when it names it, or says that a
        connection was lost (`CONNECTION_LOST`) while a peer is dead.

        Args:
            line: The task's next output line, without the launcher's prefix.
            dead_peers: The names (`peer_names`) of the peers that died.
        """
        peers = tuple(dead_peers)
        if LOG_RECORD.match(line) is None:
            self._in_record = self._in_record and line.startswith(GRPC_CONTINUATIONS)
        else:
            self._in_record = bool(peers) and (
                says_connection_lost(line) or (line.startswith("E") and _names_any(line, peers))
            )
        return self._in_record
