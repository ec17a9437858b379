"""Per-process figures from ``/proc`` for end-to-end tests: memory, threads, open files.

Owns reading one process's resident memory (``VmRSS`` in ``/proc/PID/status``), thread
count (``/proc/PID/task`` entries) and open file descriptors (``/proc/PID/fd`` entries),
and ``Sampler``: a thread that samples the launcher of a job and every task process of it
(found as ``chaos.task_pids`` finds them) about every 0.5 s. Samples are keyed by
``(task, pid)``, so each *life* of a task (one process; a restarted task is a new pid) has
its own time series. The sampler can also record a progress marker (e.g. the newest
checkpoint) whenever it changes, so a test can cut each life into phases. Standard library
only; Linux only.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Hashable

from chaos import task_name, task_pids

LAUNCHER = "launcher"  # The task name under which the launcher process itself is sampled.


def rss_bytes(pid: int) -> int | None:
    """The process's resident set size in bytes (``VmRSS``); None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024  # The kernel reports kB.
    except (OSError, ValueError):
        pass
    return None


def _entries(path: str) -> int | None:
    try:
        return len(os.listdir(path))
    except OSError:
        return None


def thread_count(pid: int) -> int | None:
    """The process's threads (``/proc/PID/task`` entries); None if it is gone."""
    return _entries(f"/proc/{pid}/task")


def fd_count(pid: int) -> int | None:
    """The process's open file descriptors (``/proc/PID/fd`` entries); None if it is gone."""
    return _entries(f"/proc/{pid}/fd")


def parent_pid(pid: int) -> int | None:
    """The process's parent (field 4 of ``/proc/PID/stat``); None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])  # The name may hold spaces.
    except (OSError, ValueError, IndexError):
        return None


def _life_pid(task: str, pid: int) -> int:
    """The task's own process: a child it started (ctypes' ``ldconfig`` at import time,
    say) inherits its TF_CONFIG and is what ``task_pids`` finds then, but is no new life."""
    parent = parent_pid(pid)
    while parent and task_name(parent) == task:
        pid, parent = parent, parent_pid(parent)
    return pid


@dataclasses.dataclass(frozen=True)
class Sample:
    """One reading of one process."""

    at: float  # time.time()
    rss: int  # bytes
    threads: int
    fds: int


def sample(pid: int) -> Sample | None:
    """Reads the three figures of ``pid``; None unless all three could be read."""
    at = time.time()
    rss, threads, fds = rss_bytes(pid), thread_count(pid), fd_count(pid)
    if rss is None or threads is None or fds is None:
        return None
    return Sample(at=at, rss=rss, threads=threads, fds=fds)


class Sampler(threading.Thread):
    """Samples a launcher and its task processes until stopped; one series per life.

    Attributes:
        series: ``{(task, pid): [Sample, ...]}``; the launcher is the task ``LAUNCHER``.
        marks: ``[(time, value), ...]``: each new value of ``progress()``, in order.
    """

    def __init__(
        self,
        launcher_pid: int,
        *,
        interval: float = 0.5,
        progress: Callable[[], Hashable] | None = None,
    ):
        super().__init__(name="proc-stats-sampler", daemon=True)
        self.launcher_pid = launcher_pid
        self.interval = interval
        self.progress = progress
        self.series: dict[tuple[str, int], list[Sample]] = {}
        self.marks: list[tuple[float, Hashable]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def _tick(self) -> None:
        tasks = {task: _life_pid(task, pid) for task, pid in task_pids(self.launcher_pid).items()}
        processes = {LAUNCHER: self.launcher_pid, **tasks}
        for task, pid in processes.items():
            reading = sample(pid)
            if reading is not None:
                with self._lock:
                    self.series.setdefault((task, pid), []).append(reading)
        if self.progress is not None:
            value = self.progress()
            if not self.marks or self.marks[-1][1] != value:
                self.marks.append((time.time(), value))

    def run(self) -> None:
        while not self._stopping.is_set():
            self._tick()
            self._stopping.wait(self.interval)

    def stop(self) -> None:
        """Ends the sampling thread and waits for it."""
        self._stopping.set()
        self.join(timeout=10)

    def lives(self, task: str) -> list[list[Sample]]:
        """The series of each life of ``task``, in the order they started."""
        with self._lock:
            found = [list(samples) for (name, _), samples in self.series.items() if name == task]
        return sorted(found, key=lambda samples: samples[0].at)

    def tasks(self) -> list[str]:
        """Every task seen, sorted, the launcher included."""
        with self._lock:
            return sorted({name for name, _ in self.series})
