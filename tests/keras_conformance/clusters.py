"""The conformance suite's clusters: `multi_worker` ×2 and `parameter_server`, one launch each.

`Clusters()` starts both local clusters at once (`python -m launch ... --
python cluster_job.py`), each running every case its strategy runs, in the registry's
order; `ClusterRun.poll()` collects each task's JSON lines when a launch ends. A launch
that crashes or hangs in a case (the job's watchdog ends a case past
`cluster_job.CASE_TIMEOUT_S`) records that case's problem with the last lines of the
launch log; one that a task stopped after a case ending in a TensorFlow runtime error
(it may have broken the collectives) keeps that case's result. Either way the cluster is
started again from the next case, at most `MAX_LAUNCHES` times per strategy;
`Clusters.wait` bounds everything by `DEADLINE_S`.

`conftest.py` starts them at this folder's first test, so that they run beside the
in-process tests; the fixture of `test_multi_process_conformance.py` waits for them.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from conformance import all_cases

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
JOB = os.path.join(HERE, "cluster_job.py")
CLUSTERS = {
    "multi_worker": (["--strategy=multi_worker", "--num_workers=2"], ("worker_0", "worker_1")),
    "parameter_server": (
        ["--strategy=parameter_server", "--num_workers=2", "--num_ps=1"],
        ("chief_0",),
    ),
}
MAX_LAUNCHES = 12
DEADLINE_S = 1200  # Both clusters, all launches: a bound on hangs, not a timing test.
LOG_LINES = 25
STOP_TIMEOUT_S = 20


def case_names(strategy: str) -> list[str]:
    """The cases `strategy` runs, in registry order (every worker runs them in it)."""
    return [name for name, case in all_cases().items() if case.runs_under(strategy)]


class ClusterRun:
    """One strategy's cases on a local cluster, relaunched past a crashed or hung case."""

    def __init__(self, strategy: str, out, names: list[str]):
        self.strategy = strategy
        self.flags, self.tasks = CLUSTERS[strategy]
        self.out = out
        self.remaining = list(names)
        self.results: dict[str, dict] = {}
        self.launches = 0
        self.unexplained_exits: list[str] = []
        self.process = None
        self.folder = None
        self.log = None

    def start(self) -> None:
        self.launches += 1
        self.folder = self.out / f"launch-{self.launches}"
        self.folder.mkdir()
        self.log = open(self.folder / "launch.log", "w")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        env.pop("TF_CONFIG", None)
        env["PYTHONPATH"] = os.pathsep.join(
            [REPO, HERE, *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        argv = [sys.executable, "-m", "launch", *self.flags, "--"]
        argv += [sys.executable, JOB, str(self.folder), *self.remaining]
        self.process = subprocess.Popen(  # Its own group: stop() can end all its tasks.
            argv,
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def poll(self) -> bool:
        """True once every case has a result (after relaunches as needed)."""
        if self.process is None:
            return True
        code = self.process.poll()
        if code is None:
            return False
        self._collect(code)
        return self.process is None

    def stop(self, why: str) -> None:
        """Stops the launch (the launcher stops its tasks; their group is killed if not)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._collect("stopped", why=why)

    def _records(self, task: str) -> list[dict]:
        path = self.folder / f"{task}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _log_tail(self) -> str:
        self.log.close()
        lines = (self.folder / "launch.log").read_text(errors="replace").splitlines()
        return "\n".join(f"    {line}" for line in lines[-LOG_LINES:])

    def _collect(self, code, why: str = "") -> None:
        """Reads the launch's records; relaunches from the first case left to run."""
        observed = {task: {} for task in self.tasks}
        begun, timed_out, restarts = set(), set(), []
        for task in self.tasks:
            for record in self._records(task):
                if "begin" in record:
                    begun.add(record["begin"])
                elif "timeout" in record:
                    timed_out.add(record["timeout"])
                elif "restart_after" in record:
                    restarts.append(record["restart_after"])
                else:
                    observed[task][record["case"]] = record["observation"]
        tail = self._log_tail()
        launched, self.remaining, self.process = self.remaining, [], None
        done = 0
        for name in launched:
            if not all(name in observed[task] for task in self.tasks):
                break
            self.results[name] = {task: observed[task][name] for task in self.tasks}
            done += 1
        rest = launched[done:]
        restarted = any(name in launched[:done] for name in restarts)
        if code != 0 and not restarted and not rest:
            self.unexplained_exits.append(f"launch {self.launches}: exit {code}{why}\n{tail}")
        if not rest:
            return
        name = rest[0]
        if code == 0:
            problem = "the cluster exited 0 without a result for it"
        elif restarted:  # Stopped on purpose after a case that broke the runtime.
            problem = None
        elif name in begun:
            reason = "ran past the case timeout" if name in timed_out else f"exit {code}"
            problem = f"a task crashed or hung in this case ({reason}{why})"
        elif done:
            problem = None
            self.unexplained_exits.append(
                f"launch {self.launches}: stopped between cases (exit {code}{why})\n{tail}"
            )
        else:
            problem = f"the cluster failed before this case began (exit {code}{why})"
        if problem is not None:
            self.results[name] = {"problem": f"{problem}; launch log:\n{tail}"}
            rest = rest[1:]
            if not done and name not in begun:  # Nothing ran at all: do not retry.
                for other in rest:
                    self.results[other] = {"problem": f"not run: {problem}"}
                rest = []
        if not rest:
            return
        if self.launches < MAX_LAUNCHES and not why:
            self.remaining = rest
            self.start()
        else:
            reason = why or f": {MAX_LAUNCHES} launches used up"
            for other in rest:
                self.results[other] = {"problem": f"not run{reason}"}


class Clusters:
    """Both strategies' runs, started together and watched by a thread.

    The thread collects each launch as it ends and relaunches past a failed case at
    once, while the in-process tests keep this process busy; `wait()` joins it.
    """

    def __init__(self):
        self.started = time.monotonic()
        self.out = pathlib.Path(tempfile.mkdtemp(prefix="keras-conformance-clusters-"))
        self.runs: dict[str, ClusterRun] = {}
        for strategy in CLUSTERS:
            folder = self.out / strategy
            folder.mkdir()
            self.runs[strategy] = ClusterRun(strategy, folder, case_names(strategy))
            self.runs[strategy].start()
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="clusters", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        """Polls every run until each has all its results, DEADLINE_S passes, or stop()."""
        while not all([run.poll() for run in self.runs.values()]):
            late = time.monotonic() - self.started > DEADLINE_S
            if late or self._stopping.is_set():
                why = f"; stopped {DEADLINE_S} s after the start" if late else "; stopped early"
                for run in self.runs.values():
                    run.stop(why)
                return
            self._stopping.wait(0.5)

    def wait(self) -> dict[str, ClusterRun]:
        self._watcher.join()
        return self.runs

    def stop(self) -> None:
        """Ends what still runs and removes the output folder."""
        self._stopping.set()
        self._watcher.join()
        shutil.rmtree(self.out, ignore_errors=True)


# Where conftest.py keeps the Clusters it started.
EARLY_START = pytest.StashKey[Clusters]()
