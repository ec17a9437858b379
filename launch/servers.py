"""Server tasks of a parameter_server cluster that stop when the chief has finished.

This module owns one rule shared by the engines' task helpers (`launch.slurm.task`,
`launch.k8s.task`): a ps or worker task is a TensorFlow server that never exits by
itself, so the helper runs it as a child and stops it, returning 0, once the
chief's port has been open and then stays closed. Computing TF_CONFIG is each
engine's job; running a whole local cluster is `launch.runner`'s.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence

_CONNECT_TIMEOUT_S = 2.0
_STOP_TIMEOUT_S = 10.0


def port_open(address: str, timeout: float = _CONNECT_TIMEOUT_S) -> bool:
    """Returns whether a TCP connection to "host:port" succeeds now."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def serve_until_chief_exits(
    argv: Sequence[str],
    env: Mapping[str, str],
    chief_address: str,
    *,
    poll_interval: float = 2.0,
    misses_to_stop: int = 3,
    is_open: Callable[[str], bool] = port_open,
    prog: str = "launch",
) -> int:
    """Runs a server task as a child until it exits or the chief has finished.

    The chief has finished when its port was open once and then is closed at
    `misses_to_stop` checks in a row; the child is then sent SIGTERM (SIGKILL
    after 10 s) and 0 is returned. SIGINT and SIGTERM sent to this process are
    forwarded to the child. `prog` names this program in the message it prints.

    Returns:
        0 after stopping the child; else the child's exit code (128 + N when
        killed by signal N).
    """
    child = subprocess.Popen(list(argv), env=dict(env))
    forward = lambda signum, _: child.send_signal(signum)  # noqa: E731
    previous = {
        signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        seen, misses = False, 0
        while child.poll() is None:
            if is_open(chief_address):
                seen, misses = True, 0
            elif seen:
                misses += 1
                if misses >= misses_to_stop:
                    print(
                        f"{prog}: the chief at {chief_address} has finished; stopping this server.",
                        file=sys.stderr,
                        flush=True,
                    )
                    child.terminate()
                    try:
                        child.wait(timeout=_STOP_TIMEOUT_S)
                    except subprocess.TimeoutExpired:
                        child.kill()
                        child.wait()
                    return 0
            time.sleep(poll_interval)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 128 - child.returncode if child.returncode < 0 else child.returncode


def run_task(
    command: Sequence[str], env: Mapping[str, str], *, chief: str | None, prog: str
) -> int:
    """Runs this task's `command` with `env`: execs it, or serves until the chief exits.

    Args:
        command: The user's command.
        env: The task's environment (its TF_CONFIG included).
        chief: The chief's address when this task is a parameter_server ps or worker
            task, whose server runs until the chief is gone; None execs `command`.
        prog: The entry point's name, for messages.

    Returns:
        The exit code (exec does not return; 127 when the command cannot run).
    """
    try:
        if chief is not None:
            return serve_until_chief_exits(command, env, chief, prog=prog)
        os.execvpe(command[0], list(command), dict(env))
    except OSError as error:
        print(f"{prog}: error: cannot run {command[0]!r}: {error}", file=sys.stderr, flush=True)
        return 127
    return 0  # Not reached: execvpe replaces this process.
