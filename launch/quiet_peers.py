"""Quiet peers: which output lines of an attempt's tasks are printed once one has failed.

When a task of a cluster fails, the others print what its failure did to them (a
collective's UnavailableError, a traceback, gRPC's connection errors) until the
launcher stops them: dozens of lines that hide the one that matters. This module owns
that decision for one attempt, line by line, and the attempt's root cause, so that the
two agree:

- The root cause is the first task seen to have ended the attempt: one that exited
  non-zero, a server that exited at all, or one that could not start, unless the
  `RestartPolicy` still restarts it in place. Its own lines are always printed.
- Once there is a root cause, every other task's lines are not printed.
- Once a task died and is restarted in place (a parameter_server worker), the others'
  error records naming it are not printed (`launch.fallout`); their other lines are.

The lines not printed still go to the tasks' log files and tails
(`launch._processes.PrefixedOutput`, `launch.task_logs`). Since the reader threads ask
as each line arrives, a peer's error printed the instant the root cause died is caught
too, not only after the launcher's next poll; and a line saying a connection was lost
waits up to `GRACE_S` for the dead peer to be seen, since a killed process closes its
sockets a moment before it can be reaped. Standard library only.
"""

import threading
import time
from collections.abc import Sequence

from launch._processes import RunningTask
from launch.fallout import FalloutFilter, peer_names, says_connection_lost
from launch.restarts import RestartPolicy

# How long a line saying a connection was lost waits for the launcher to see the peer
# that died: its sockets close (and the others log the loss) before it can be reaped.
GRACE_S = 1.0
_GRACE_POLL_S = 0.01


class PeerFailures:
    """The root cause of one attempt, and whether each task's line is printed.

    Safe to call from the reader threads and the launcher's thread at once.

    Args:
        tasks: The attempt's running tasks; the launcher adds to it and replaces a task
            restarted in place, and this object reads it as it is at each call.
        restarts: The policy whose in-place restarts keep a task from being the root cause.
        quiet: Whether the lines of a failed task's peers are held back; False prints
            every line (the root cause is decided the same way).
    """

    def __init__(self, tasks: Sequence[RunningTask], restarts: RestartPolicy, *, quiet: bool):
        self._tasks = tasks
        self._restarts = restarts
        self._quiet = quiet
        self._root: RunningTask | None = None
        self._filters: dict[str, FalloutFilter] = {}
        self._names: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def _ended_attempt(self, task: RunningTask) -> bool:
        """Whether `task` has ended the attempt: failed, and not restarted in place."""
        if task.proc is None:
            return task.start_error is not None
        code = task.poll()
        failed = code is not None and (code != 0 or task.launch.is_server)
        return failed and task.restarts >= self._restarts.restarts_in_place(task.launch)

    def root_cause(self) -> RunningTask | None:
        """The first task seen to have ended the attempt, or None while none has."""
        with self._lock:
            if self._root is None:
                self._root = next((t for t in list(self._tasks) if self._ended_attempt(t)), None)
            return self._root

    def prints(self, task: RunningTask, line: str) -> bool:
        """Whether `task`'s output line `line` (without its prefix) goes to the terminal.

        A line saying a connection was lost, while no peer is known to have failed,
        waits (at most `GRACE_S`) for one to: the peer that died may not be reaped yet.
        """
        if not self._quiet:
            return True
        if says_connection_lost(line):
            self._wait_for_a_failed_peer(task)
        root = self.root_cause()
        if root is not None:
            return root.launch.name == task.launch.name
        down = [
            name
            for peer in list(self._tasks)
            if peer.launch.name != task.launch.name and self._restarted_in_place(peer)
            for name in self._names_of(peer)
        ]
        with self._lock:
            fallout = self._filters.setdefault(task.launch.name, FalloutFilter())
        return not fallout.is_fallout(line, down)

    def _wait_for_a_failed_peer(self, task: RunningTask) -> None:
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline:
            peers = [peer for peer in list(self._tasks) if peer.launch.name != task.launch.name]
            if self.root_cause() is not None or any(map(self._restarted_in_place, peers)):
                return
            time.sleep(_GRACE_POLL_S)

    def _restarted_in_place(self, task: RunningTask) -> bool:
        """Whether `task` died and was (or is about to be) started again in place."""
        if not self._restarts.restarts_in_place(task.launch):
            return False
        return task.restarts > 0 or task.poll() is not None

    def _names_of(self, task: RunningTask) -> tuple[str, ...]:
        with self._lock:
            names = self._names.get(task.launch.name)
            if names is None:
                names = self._names[task.launch.name] = peer_names(task.launch)
            return names
