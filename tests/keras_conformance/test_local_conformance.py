"""Keras conformance in this process: `one_device` and `mirrored` (2 logical CPUs).

Each case (`cases_*.py`) runs twice: once through Keras' own `Model.fit/evaluate/predict`
on one device with no strategy (the oracle, once per session, `conformance.oracle`), and
once through `tfdist.fit/evaluate/predict` with the model built in the strategy's
scope. The two observations must agree by `conformance.check`: hooks, indices, log keys
and History keys exactly; per-epoch values within 1e-4 relative; weights within 1e-5.

These run in the unit stage (unmarked): about 90 tiny cases at well under a second
each per strategy. The cluster strategies are `test_cluster_conformance.py` (e2e).
"""

import pytest
from conformance import all_cases, check, local_front, observe, oracle

CASES = all_cases()
LOCAL_STRATEGIES = ("one_device", "mirrored")


@pytest.mark.parametrize("strategy", LOCAL_STRATEGIES)
@pytest.mark.parametrize("name", list(CASES), ids=lambda name: f"{CASES[name].category}:{name}")
def test_tfdist_matches_keras(name, strategy):
    case = CASES[name]
    got = observe(case, local_front(strategy))
    problems = check(case, strategy, oracle(name), got)
    if problems:
        pytest.fail(f"{name} under {strategy}:\n  " + "\n  ".join(problems[:25]), pytrace=False)
