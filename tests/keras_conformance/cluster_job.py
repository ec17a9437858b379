"""One task of a conformance cluster: runs cases through tfdist, one JSON line per case.

Usage, under ``python -m launch`` (``multi_worker``: every worker runs it, the same cases
in the same order, as their collectives need; ``parameter_server``: the chief)::

    python cluster_job.py OUT_DIR CASE [CASE ...]

The strategy comes from TF_CONFIG (``tfdist.make_strategy("auto")``). Each task appends
to ``OUT_DIR/<task type>_<index>.jsonl`` a ``{"begin": case}`` line before a case and a
``{"case": case, "observation": ..., "seconds": ...}`` line after it, flushed at once, so
what finished survives a crash or a hang. A case that runs past ``CASE_TIMEOUT_S`` (a
worker waiting in a collective its peer left) writes ``{"timeout": case}`` and ends the
task with exit code 3; a case that ended in a TensorFlow runtime error (which can leave
the collectives or the coordinator aborted for every later case) writes
``{"restart_after": case}`` and ends the task with exit code 4. Either way the launcher
stops the other tasks and the test's fixture starts the cluster again from the next
case, so one case's failure does not become every later case's.
"""

import json
import os
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conformance import TfdistFront, all_cases, observe, raised_a_runtime_error

import tfdist

CASE_TIMEOUT_S = 90  # A case takes seconds; a loaded 2-core machine may make it 10x.
TIMEOUT_EXIT_CODE = 3
RESTART_EXIT_CODE = 4


def task_name() -> str:
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    return f"{task['type']}_{task['index']}"


class Records:
    """This task's JSON-lines file, each line flushed and synced as it is written."""

    def __init__(self, path: str):
        self._file = open(path, "a")
        self._lock = threading.Lock()

    def write(self, record: dict) -> None:
        with self._lock:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())


def _on_timeout(records: Records, name: str) -> None:
    records.write({"timeout": name, "seconds": CASE_TIMEOUT_S})
    print(f"{task_name()}: case {name} ran past {CASE_TIMEOUT_S} s; stopping", flush=True)
    os._exit(TIMEOUT_EXIT_CODE)


def main(argv) -> int:
    out_dir, names = argv[1], argv[2:]
    cases = all_cases()
    unknown = [name for name in names if name not in cases]
    if unknown:
        sys.exit(f"unknown cases: {unknown}")
    records = Records(os.path.join(out_dir, f"{task_name()}.jsonl"))
    front = TfdistFront(tfdist.make_strategy("auto"), root=os.path.join(out_dir, "work"))
    for name in names:
        records.write({"begin": name})
        watchdog = threading.Timer(CASE_TIMEOUT_S, _on_timeout, (records, name))
        watchdog.daemon = True
        started = time.monotonic()
        watchdog.start()
        observation = observe(cases[name], front)
        watchdog.cancel()
        seconds = round(time.monotonic() - started, 2)
        records.write({"case": name, "observation": observation, "seconds": seconds})
        if raised_a_runtime_error(observation) and name != names[-1]:
            records.write({"restart_after": name})
            return RESTART_EXIT_CODE
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
