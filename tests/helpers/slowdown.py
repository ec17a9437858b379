"""One task of a local launch slowed by real means: SIGSTOP/SIGCONT duty cycles.

Owns finding a task process among a launcher's descendants (by the task its
TF_CONFIG names) and running it ``duty`` of every ``period`` seconds from the moment
it exists until the harness stops (`duty_cycle`), and running a launch that way
(`run_slowed`). The process is always left running (SIGCONT) when the harness ends,
so a stopped task never outlives it, and a launch that overruns its timeout is ended
with every process under it. Used by the slow-worker e2e test and
``benchmarks/slow_worker.py``.
"""

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import threading
import time

_POLL_SECONDS = 0.05


def _task_of(pid):
    """``(type, index)`` from the TF_CONFIG of process ``pid``, or None."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        task = json.loads(env[b"TF_CONFIG"])["task"]
        return task["type"], int(task["index"])
    except (OSError, KeyError, ValueError):
        return None


def _parents():
    """``{pid: parent pid}`` of every process this user can see."""
    found = {}
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as f:
                found[int(name)] = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError):
            continue
    return found


def _descends(pid, root, parents):
    while pid in parents and pid != root:
        pid = parents[pid]
    return pid == root


def find_task(root, task, stop):
    """The descendant of ``root`` whose TF_CONFIG names ``task``; None once ``stop`` is set."""
    while not stop.is_set():
        parents = _parents()
        for pid in parents:
            if pid != root and _descends(pid, root, parents) and _task_of(pid) == task:
                return pid
        stop.wait(_POLL_SECONDS)
    return None


def _signal(pid, sig):
    """Sends ``sig``; False once the process is gone."""
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


@dataclasses.dataclass
class Slowdown:
    """What the harness did: the process it slowed and how many times it stopped it."""

    pid: int = 0
    stops: int = 0


def _cycle(root, task, stop, duty, period, record):
    record.pid = find_task(root, task, stop) or 0
    if not record.pid:
        return
    try:
        while not stop.wait(duty * period):
            if not _signal(record.pid, signal.SIGSTOP):
                return
            record.stops += 1
            time.sleep((1 - duty) * period)  # Not stop.wait: the stop always lasts its time.
            if not _signal(record.pid, signal.SIGCONT):
                return
    finally:
        _signal(record.pid, signal.SIGCONT)


@contextlib.contextmanager
def duty_cycle(root, *, task=("worker", 1), duty=1 / 3, period=0.3, timeout=10.0):
    """Runs ``task`` of the launch under process ``root`` ``duty`` of every ``period`` s.

    Yields a `Slowdown` filled in as the cycle runs. On exit the process is sent SIGCONT
    (whatever happened) and the harness thread is joined within ``timeout`` seconds.
    """
    stop = threading.Event()
    record = Slowdown()
    thread = threading.Thread(
        target=_cycle, args=(root, task, stop, duty, period, record), daemon=True
    )
    thread.start()
    try:
        yield record
    finally:
        stop.set()
        thread.join(timeout)
        if record.pid:
            _signal(record.pid, signal.SIGCONT)


def _descendants(root):
    parents = _parents()
    return [pid for pid in parents if pid != root and _descends(pid, root, parents)]


def _end_tree(process, grace):
    """SIGTERM to ``process`` (the launcher forwards it), then SIGKILL to all under it."""
    tree = _descendants(process.pid)
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    for pid in [process.pid, *tree]:
        _signal(pid, signal.SIGCONT)
        _signal(pid, signal.SIGKILL)
    process.wait()


def run_slowed(argv, *, cwd, env, log, slow=True, timeout=600.0, **cycle):
    """Runs ``argv`` (a launch) with one of its tasks slowed (`duty_cycle` takes ``cycle``).

    Output goes to the file object ``log``. Returns ``(exit code, Slowdown)``; a launch
    still running after ``timeout`` seconds is ended (all its processes) and
    `subprocess.TimeoutExpired` raised.
    """
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    slowing = duty_cycle(process.pid, **cycle) if slow else contextlib.nullcontext(Slowdown())
    try:
        with slowing as record:
            return process.wait(timeout), record
    except subprocess.TimeoutExpired:
        _end_tree(process, grace=30)
        raise
