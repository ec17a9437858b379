"""Keras conformance in this process: `one_device` and `mirrored` (2 logical CPUs).

Each case (`cases_*.py`) runs twice: once through Keras' own `Model.fit/evaluate/predict`
on one device with no strategy (the oracle, once per session, `conformance.oracle`), and
once through `tfdist.fit/evaluate/predict` with the model built in the strategy's
scope. The two observations must agree by `rules.check`: hooks, indices, log keys
and History keys exactly; per-epoch values within 1e-4 relative; weights within 1e-5.

Marked `e2e` although they start no process: about 90 cases per strategy, each tracing a
tiny model's functions (Keras' own run included, about 0.7 s per case and front door on
2 cores), take minutes, more than the unit stage's "a few minutes at most". In the e2e
stage they run first in this folder, beside the clusters of
`test_multi_process_conformance.py` (conftest.py starts them). The suite's own rules are
unit-tested in `test_comparison.py` and `test_clusters.py`. Cases tfdist does not match
yet are strict expected failures, listed in `known_gaps.py`.
"""

import pytest
from conformance import all_cases, local_front, observe, oracle
from known_gaps import marks
from rules import check

pytestmark = pytest.mark.e2e

CASES = all_cases()
LOCAL_STRATEGIES = ("one_device", "mirrored")


@pytest.mark.parametrize(
    "name, strategy",
    [
        pytest.param(
            name,
            strategy,
            id=f"{CASES[name].category}:{name}-{strategy}",
            marks=marks(name, strategy),
        )
        for strategy in LOCAL_STRATEGIES
        for name in CASES
    ],
)
def test_tfdist_matches_keras(name, strategy):
    case = CASES[name]
    got = observe(case, local_front(strategy))
    problems = check(case, strategy, oracle(name), got)
    if problems:
        pytest.fail(f"{name} under {strategy}:\n  " + "\n  ".join(problems[:25]), pytrace=False)
