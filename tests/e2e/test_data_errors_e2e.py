"""Issue 23's data mistakes on real clusters: multi_worker (2 workers) and parameter_server
(chief, 2 workers, 1 ps), each launched once with `tfdist.launch` and running the cases of
`data_error_cases` in turn. Every task that runs the cases ends each with one line (a
`ConfigError`), the same on every worker where both see the mistake; a bad label only one
worker reads ends that worker with the label's line and the other with a line naming it.
No task hangs: a watchdog ends any task still running after `DEADLINE` seconds, which fails
the launch. Each cluster runs one case whose bad label only a step sees, last: it leaves a
multi_worker task's collectives aborted. multi_worker reads it from a dataset, the
parameter_server workers from arrays (a `tf.data.Dataset` does not reach parameter-server
workers through `tfdist.fit` yet: "Unable to parse tensor proto", with or without a mistake
in it). In-process strategies and Keras' own fit (the oracle):
tests/tfdist/training/test_data_errors.py."""

import io
import json
import time

from data_error_cases import BY_NAME, CASES, matches

import tfdist

DEADLINE = 400  # Seconds a task may take for all the cases (a hang fails, it does not wait).
LATE_LABEL = BY_NAME["label_out_of_range_in_a_later_batch"]
SUBCLASSED = BY_NAME["label_out_of_range_for_a_subclassed_model"]
CASES_OF = {
    "multi_worker": [case for case in CASES if case is not SUBCLASSED],
    "parameter_server": [case for case in CASES if case is not LATE_LABEL],
}


def every_case(folder: str, kind: str, names: list[str]) -> dict:
    """Runs the cases `names` on this task, in order; writes `{case: outcome}` to
    FOLDER/TASK.json after each."""
    import os
    import threading

    from data_error_cases import BY_NAME, run

    import tfdist

    watchdog = threading.Timer(DEADLINE, lambda: os._exit(3))
    watchdog.daemon = True
    watchdog.start()
    cluster = tfdist.read_tf_config()
    distribution = tfdist.make_strategy(kind, cluster=cluster)
    outcomes = {}
    for case in (BY_NAME[name] for name in names):
        began = time.perf_counter()
        try:
            run(case, distribution)
            outcome = {"raised": None}
        except tfdist.ConfigError as error:
            outcome = {"raised": "ConfigError", "message": str(error)}
        except Exception as error:
            outcome = {"raised": type(error).__name__, "message": str(error)[-3000:]}
        outcome["seconds"] = round(time.perf_counter() - began, 2)
        outcomes[case.name] = outcome
        with open(os.path.join(folder, f"{cluster.task.name}.json"), "w") as f:
            json.dump(outcomes, f, indent=1)
    watchdog.cancel()
    return outcomes


def _launch(tmp_path, kind, **cluster):
    began = time.perf_counter()
    names = [case.name for case in CASES_OF[kind]]
    tfdist.launch(
        every_case, str(tmp_path), kind, names, strategy=kind, output=io.StringIO(), **cluster
    )
    print(f"{kind}: every case in {time.perf_counter() - began:.0f} s")
    return {path.stem: json.loads(path.read_text()) for path in tmp_path.glob("*.json")}


def _one_line(outcome: dict, case) -> bool:
    message = outcome.get("message", "")
    return outcome["raised"] == "ConfigError" and "\n" not in message and matches(case, message)


def test_multi_worker_every_worker_ends_every_case_with_one_line(tmp_path):
    found = _launch(tmp_path, "multi_worker", num_workers=2)

    assert set(found) == {"worker:0", "worker:1"}, found
    for case in CASES_OF["multi_worker"]:
        if case is LATE_LABEL:
            continue
        for task, outcomes in found.items():
            assert _one_line(outcomes[case.name], case), (task, case.name, outcomes[case.name])
    # The bad label is in one worker's part: it says so; the other names it and its line.
    late = {task: outcomes[LATE_LABEL.name] for task, outcomes in found.items()}
    readers = [task for task, outcome in late.items() if _one_line(outcome, LATE_LABEL)]
    assert len(readers) == 1, late
    (reader,) = readers
    (other,) = set(late) - {reader}
    assert late[other] == {
        "raised": "ConfigError",
        "message": f"{other} stopped because {reader} stopped on a data error (see {reader}'s "
        f"output): {late[reader]['message']}",
        "seconds": late[other]["seconds"],
    }, late


def test_parameter_server_coordinator_ends_every_case_with_one_line(tmp_path):
    found = _launch(tmp_path, "parameter_server", num_workers=2, num_ps=1)

    assert set(found) == {"chief:0"}, found  # Only the coordinator runs the function.
    for case in CASES_OF["parameter_server"]:  # A worker's label error comes through
        # ClusterCoordinator.
        assert _one_line(found["chief:0"][case.name], case), (case.name, found["chief:0"])
