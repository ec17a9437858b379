"""A chaos harness for end-to-end runs: SIGKILL randomly chosen tasks of a launched job.

The trainer's local launcher (``python -m tfdist.train --num_workers=N --max_restarts=R``)
is started in its own session; its tasks are found among its descendants by the
``TF_CONFIG`` in ``/proc/PID/environ``. Each kill waits until the job makes progress
again (the chief's ``checkpoints/checkpoint`` index is rewritten after the previous kill),
then kills either at a random moment or while a checkpoint is being written (a
``ckpt-N_temp`` folder of TensorFlow's exists under ``model_dir``). Each kill is recorded
with the newest complete checkpoint at that moment and the seconds until the next
checkpoint after it, so a test can print what every kill cost.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from e2e_helpers import REPO


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(child) for child in f.read().split()]
    except OSError:
        return []


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def task_name(pid: int) -> str | None:
    """The task ("worker:1") of the TF_CONFIG in the process's environment; None if none."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read().split(b"\0")
    except OSError:
        return None
    for item in environ:
        if item.startswith(b"TF_CONFIG="):
            try:
                task = json.loads(item[len(b"TF_CONFIG=") :])["task"]
            except (ValueError, KeyError, TypeError):
                return None
            return f"{task['type']}:{task['index']}"
    return None


def task_pids(launcher_pid: int) -> dict[str, int]:
    """{"worker:1": pid, ...}: the launcher's task processes (the deepest with a TF_CONFIG)."""
    tasks = {}
    for pid in _descendants(launcher_pid):  # Parents come before their children.
        name = task_name(pid)
        if name:
            tasks[name] = pid
    return tasks


@dataclasses.dataclass
class Kill:
    """One SIGKILL: whom, when, how, and what the job had saved at that moment."""

    task: str
    mode: str  # "random" or "saving"
    at: float  # time.time() of the kill
    saving: bool  # a checkpoint was being written at the kill
    newest_step: int | None  # the newest complete checkpoint then
    newest_age: float  # seconds since that checkpoint was written
    restarted_after: float | None = None  # seconds until the task ran again (a new pid)
    in_place: bool = False  # only the killed task restarted (a parameter_server worker)
    recovered_after: float | None = None  # seconds until the job checkpointed after that


class Chaos:
    """Runs one launched job and kills its tasks as planned."""

    def __init__(self, flags: list[str], *, model_dir: Path, log_path: Path, seed: int):
        self.model_dir = Path(model_dir)
        self.rng = random.Random(seed)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        env.pop("TF_CONFIG", None)
        self._log = open(log_path, "w")
        self.log_path = Path(log_path)
        self.started = time.time()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tfdist.train", *flags],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.kills: list[Kill] = []
        self.why_not = ""  # Why the last kill_one did not kill.
        self._samples: list[tuple[float, int | None]] = []

    # What the job has written.
    @property
    def _index(self) -> Path:
        return self.model_dir / "checkpoints" / "checkpoint"

    def _index_mtime(self) -> float:
        try:
            return os.stat(self._index).st_mtime
        except OSError:
            return 0.0

    def newest_step(self) -> int | None:
        try:
            text = self._index.read_text()
        except OSError:
            return None
        found = re.search(r'^model_checkpoint_path: ".*ckpt-(\d+)"', text, re.M)
        return int(found.group(1)) if found else None

    def saving(self) -> bool:
        """A checkpoint is being written: a fresh ``ckpt-N_temp`` folder of TensorFlow's exists.

        A kill in the middle of a save can leave its folder behind; one older than a
        second is not a save under way.
        """
        now = time.time()
        for folder in [self.model_dir / "checkpoints", *(self.model_dir / ".tmp").glob("*")]:
            try:
                names = [name for name in os.listdir(folder) if name.endswith("_temp")]
                if any(now - os.stat(folder / name).st_mtime < 1.0 for name in names):
                    return True
            except OSError:
                continue
        return False

    def _running(self) -> bool:
        return self.process.poll() is None

    def _wait_for_progress(self, since: float, timeout: float) -> float | None:
        """Waits until the checkpoint index is rewritten after ``since``; returns that time."""
        deadline = time.time() + timeout
        while time.time() < deadline and self._running():
            self._sample()
            mtime = self._index_mtime()
            if mtime > since:
                return mtime
            time.sleep(0.02)
        return None

    def _wait_for_restart(self, kill: Kill, old_pids: set, timeout: float) -> None:
        """Waits until the killed task runs again (a new pid for it); records when."""
        deadline = time.time() + timeout
        while time.time() < deadline and self._running():
            self._sample()
            now = task_pids(self.process.pid)
            if now.get(kill.task) not in (None, *old_pids):
                kill.restarted_after = time.time() - kill.at
                kill.in_place = bool(set(now.values()) & old_pids)  # The others ran on.
                return
            time.sleep(0.02)

    def _sample(self) -> None:
        """Remembers (time, step) whenever the checkpoint index changes: the job's pace."""
        mtime = self._index_mtime()
        if mtime and (not self._samples or self._samples[-1][0] != mtime):
            self._samples.append((mtime, self.newest_step()))

    def steps_per_second(self) -> float:
        """The median pace between consecutive checkpoints of one attempt, from the samples."""
        rates = sorted(
            (b[1] - a[1]) / (b[0] - a[0])
            for a, b in zip(self._samples, self._samples[1:], strict=False)
            if a[1] is not None and b[1] is not None and b[1] > a[1] and 0 < b[0] - a[0] < 10
        )
        return rates[len(rates) // 2] if rates else float("nan")

    def kill_one(self, task_type: str, mode: str, *, timeout: float = 180) -> Kill | None:
        """Kills one task once the job progresses; None if the job ended first.

        Args:
            task_type: A task ("worker:1") or a job ("worker", one of its tasks at random).
            mode: "random" (a random moment up to 1.5 s later) or "saving" (while a
                checkpoint is being written).
            timeout: Seconds to wait for progress.
        """
        since = self.kills[-1].at + (self.kills[-1].restarted_after or 0.0) if self.kills else 0.0
        progressed = self._wait_for_progress(since, timeout)
        if self.kills and progressed is not None:
            self.kills[-1].recovered_after = progressed - self.kills[-1].at
        if progressed is None:
            self.why_not = f"no new checkpoint within {timeout} s (running: {self._running()})"
            return None
        everyone = task_pids(self.process.pid)
        tasks = {
            name: pid
            for name, pid in everyone.items()
            if name == task_type or name.startswith(task_type + ":")
        }
        if not tasks or not self._running():
            self.why_not = (
                f"no task {task_type} among {task_pids(self.process.pid)} "
                f"(running: {self._running()})"
            )
            return None
        name = self.rng.choice(sorted(tasks))
        if mode == "random":
            time.sleep(self.rng.uniform(0.0, 1.5))
        else:
            deadline = time.time() + 30
            while not self.saving() and time.time() < deadline and self._running():
                self._sample()
                time.sleep(0.0005)
        newest, age = self.newest_step(), time.time() - self._index_mtime()
        try:
            os.kill(tasks[name], signal.SIGKILL)
            saving = self.saving()  # Still being written after the kill: killed mid-save.
        except ProcessLookupError:
            self.why_not = f"{name} (pid {tasks[name]}) had already exited"
            return None
        kill = Kill(
            task=name, mode=mode, at=time.time(), saving=saving, newest_step=newest, newest_age=age
        )
        self.kills.append(kill)
        self._wait_for_restart(kill, set(everyone.values()), timeout)
        return kill

    def finish(self, timeout: float = 400) -> int:
        """Waits for the launcher; records the last kill's recovery; returns its exit code."""
        last = self.kills[-1] if self.kills else None
        since = last.at + (last.restarted_after or 0.0) if last else 0.0
        deadline = time.time() + timeout
        while self._running() and time.time() < deadline:
            self._sample()
            if last and last.recovered_after is None and self._index_mtime() > since:
                last.recovered_after = self._index_mtime() - last.at
            time.sleep(0.02)
        if self._running():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self._log.close()
            raise AssertionError(
                f"the job did not end within {timeout} s:\n{self.output()[-3000:]}"
            )
        if last and last.recovered_after is None and self._index_mtime() > since:
            last.recovered_after = self._index_mtime() - last.at
        self._log.close()
        return self.process.returncode

    def kill_all(self) -> None:
        """SIGKILLs the launcher, then every process under it (each task has its own session)."""
        below = _descendants(self.process.pid)  # Before the launcher dies and they move away.
        for pid in [self.process.pid, *below]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def report(self, *, checkpoint_every: int) -> str:
        """The totals, then one line per kill: the numbers the issue asks for."""
        steps_per_second = self.steps_per_second()
        output = self.output()
        cluster_restarts = len(re.findall(r"restarting the cluster", output))
        task_restarts = len(re.findall(r"exited with code -?\d+; restarting it", output))
        lines = [
            f"{len(self.kills)} kills, {cluster_restarts} cluster restarts, "
            f"{task_restarts} in-place task restarts, {time.time() - self.started:.0f} s "
            f"in all; checkpoint every {checkpoint_every} steps "
            f"(~{checkpoint_every / steps_per_second:.1f} s uninterrupted)"
        ]
        for number, kill in enumerate(self.kills, 1):
            # A cluster restart resumes from the newest checkpoint: the steps since it are
            # lost. A worker restarted in place loses nothing: the coordinator reschedules.
            paced = steps_per_second == steps_per_second  # NaN: too few checkpoints seen.
            lost = (
                0
                if kill.in_place
                else (
                    min(checkpoint_every, round(kill.newest_age * steps_per_second))
                    if paced
                    else "?"
                )
            )
            interval = checkpoint_every / steps_per_second
            restarted = "-" if kill.restarted_after is None else f"{kill.restarted_after:.1f} s"
            recovered = (
                "-"
                if kill.recovered_after is None
                else f"{kill.recovered_after:.1f} s "
                f"(~{max(0.0, kill.recovered_after - interval):.1f} s lost)"
            )
            lines.append(
                f"  kill {number}: {kill.task:9} {kill.mode:7} at +{kill.at - self.started:5.1f} s"
                f"{' (checkpoint being written)' if kill.saving else ''}"
                f"{'; restarted in place' if kill.in_place else '; cluster restarted'}; "
                f"newest complete "
                f"checkpoint step {kill.newest_step}; ~{lost} steps lost; task back after "
                f"{restarted}; next checkpoint {recovered} after the kill"
            )
        return "\n".join(lines)
