"""Keras conformance under `multi_worker` (2 processes) and `parameter_server` (chief, 2
workers, 1 ps), each a real local cluster launched once for all its cases.

`cluster_job.py` runs every case through `tfdist.fit/evaluate/predict` in each task;
both clusters start together (`python -m launch`, `clusters.Clusters`) at this folder's
first test (conftest.py), so they run beside the in-process tests, and this module's
fixture computes Keras' own observations (the oracle, one device) and waits for them.
Each test then compares one case. Under `multi_worker` every worker runs the same cases
in the same order; the chief's (worker 0's) observation is compared, and the case fails
as well when the other worker ended it differently (raised where the chief did not, or
another error). A crash or a hang (past `cluster_job.CASE_TIMEOUT_S`) fails that case
with the launch's last log lines; after it, and after a case that ended in a TensorFlow
runtime error (which can break the collectives for every later case), the cluster is
launched again from the next case (`clusters.MAX_LAUNCHES`, `clusters.DEADLINE_S`).
`test_every_launch_ends_cleanly` fails on a launch that failed outside any case. Cases
tfdist does not match yet are strict expected failures, listed in `known_gaps.py`.

Differences from Keras' fit under `parameter_server`, asserted as tfdist's own rules:
  - Training batch hooks: the coordinator schedules steps before their results come in,
    so within an epoch `on_train_batch_begin` calls may come before earlier steps'
    `on_train_batch_end` calls. Every other hook keeps Keras' order exactly; the batch
    hooks keep Keras' indices and log keys, each kind in order, each end after its own
    begin (`conformance.batch_order_differences`).
  - Values: updates are asynchronous, so weights are not compared and per-epoch values
    are compared within 25% (0.1 absolute; `conformance.ASYNC_RTOL`: a staleness-1
    simulation of these models moves them at most 7.4%), which still catches a summed
    loss, a lost epoch, one step's loss reported as the epoch's.
  - A model's own `train_step`/`test_step` is refused with one line naming it (the
    cases marked `parameter_server="refused"`).
  - Not run: the exact-weights cases (`cases_weights.py`, `parameter_server="excluded"`).
"""

import pytest
from clusters import CLUSTERS, EARLY_START, Clusters, case_names
from conformance import all_cases, oracle
from known_gaps import marks
from rules import check

pytestmark = pytest.mark.e2e

CASES = all_cases()


@pytest.fixture(scope="module")
def cluster_results(request):
    """{strategy: its ClusterRun}; `.results[case]` is {task: observation} or {"problem": ...}."""
    clusters = request.config.stash.get(EARLY_START, None) or Clusters()
    try:
        for name in CASES:  # Keras' own observations, computed while the clusters run.
            oracle(name)
        yield clusters.wait()
    finally:
        clusters.stop()  # Idempotent: conftest.py stops what it started too.


def _outcome(observation: dict):
    """How a task's run of a case ended: the types of what it raised, if anything."""
    crashed, raised = observation.get("crashed"), observation.get("raised")
    return (crashed and crashed["type"], raised and raised["type"])


def _worker_problems(result: dict, tasks) -> list[str]:
    """Under multi_worker every worker must end a case as the chief did."""
    chief, *others = tasks
    return [
        f"{chief} and {task} ended differently (crashed, raised): "
        f"{_outcome(result[chief])} vs {_outcome(result[task])}"
        for task in others
        if _outcome(result[task]) != _outcome(result[chief])
    ]


def _params(strategy: str) -> list:
    return [
        pytest.param(name, id=f"{CASES[name].category}:{name}", marks=marks(name, strategy))
        for name in case_names(strategy)
    ]


def _check(cluster_results, strategy: str, name: str) -> None:
    result = cluster_results[strategy].results[name]
    if "problem" in result:
        pytest.fail(f"{name} under {strategy}: {result['problem']}", pytrace=False)
    tasks = CLUSTERS[strategy][1]
    problems = _worker_problems(result, tasks)
    problems += check(CASES[name], strategy, oracle(name), result[tasks[0]])
    if problems:
        pytest.fail(f"{name} under {strategy}:\n  " + "\n  ".join(problems[:25]), pytrace=False)


@pytest.mark.parametrize("strategy", list(CLUSTERS))
def test_every_launch_ends_cleanly(cluster_results, strategy):
    """A task that fails after its last case (at exit) fails the run, too."""
    exits = cluster_results[strategy].unexplained_exits
    assert not exits, "\n".join(exits)


@pytest.mark.parametrize("name", _params("multi_worker"))
def test_multi_worker_matches_keras(cluster_results, name):
    _check(cluster_results, "multi_worker", name)


@pytest.mark.parametrize("name", _params("parameter_server"))
def test_parameter_server_matches_keras_within_its_rules(cluster_results, name):
    _check(cluster_results, "parameter_server", name)
