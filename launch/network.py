"""A private network for a local cluster: every task in one Linux network namespace.

TensorFlow's gRPC servers listen on all interfaces (`*:PORT` even when TF_CONFIG says
`localhost`) and accept any request without authentication. A local cluster needs
only loopback, so the launcher can run all its tasks in one fresh network namespace
whose only interface is its own `lo`: the tasks reach each other, and no other
machine (nor this machine's other namespaces) can reach them. This needs root (or
CAP_SYS_ADMIN) and iproute2's `ip`; where either is missing the cluster runs in
the host's network and the launcher says so. Standard library only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence

from launch.task_launch import TaskLaunch


@dataclasses.dataclass(frozen=True)
class Isolation:
    """What the launcher did about the network: `namespace` is None when it could not."""

    namespace: str | None
    reason: str

    def describe(self, ports: Sequence[int] = ()) -> str:
        """One line for the start-up log."""
        if self.namespace:
            return (
                f"network: tasks run in the private network namespace {self.namespace} "
                "(loopback only; unreachable from other machines)."
            )
        listed = ", ".join(str(p) for p in ports) or "the cluster's"
        return (
            f"network: NOT isolated ({self.reason}); TensorFlow listens on all interfaces "
            f"without authentication on ports {listed}: run only on a trusted network."
        )


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


def unavailable_reason() -> str | None:
    """Why a namespace cannot be made here, or None if it can be tried."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not root: network namespaces need CAP_SYS_ADMIN"
    if shutil.which("ip") is None:
        return "iproute2's 'ip' command is not installed"
    return None


@contextlib.contextmanager
def private_network(enabled: bool = True) -> Iterator[Isolation]:
    """Creates a namespace with loopback up for the block's duration, then deletes it."""
    if not enabled:
        yield Isolation(None, "turned off with --noisolate_network")
        return
    reason = unavailable_reason()
    if reason:
        yield Isolation(None, reason)
        return
    name = f"tfdist-{os.getpid()}"
    made = _ip("netns", "add", name)
    if made.returncode != 0:
        yield Isolation(None, f"'ip netns add' failed: {made.stderr.strip() or made.returncode}")
        return
    try:
        up = _ip("-n", name, "link", "set", "lo", "up")
        if up.returncode != 0:
            yield Isolation(None, f"could not bring up loopback: {up.stderr.strip()}")
            return
        yield Isolation(name, "")
    finally:
        _ip("netns", "del", name)


def inside(launches: Sequence[TaskLaunch], isolation: Isolation) -> list[TaskLaunch]:
    """The launches, each run through `ip netns exec` when the network is isolated."""
    if not isolation.namespace:
        return list(launches)
    prefix = ("ip", "netns", "exec", isolation.namespace)
    return [dataclasses.replace(launch, argv=prefix + tuple(launch.argv)) for launch in launches]
