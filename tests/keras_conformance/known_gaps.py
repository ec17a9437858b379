"""Where tfdist does not yet do what Keras' own fit does: each (case, strategy) left.

Issue #23 tracks them. Each entry is a strict expected failure (`pytest.mark.xfail(
strict=True)`): the case still runs and is compared with Keras, and the moment tfdist
matches Keras on it the test fails ("XPASS(strict)") until its entry is removed here. So
this table can only shrink, and it always says exactly what is left.

`GAPS[strategy][case]` is the first difference the comparison found, in a few words.
"""

from __future__ import annotations

import pytest

GAPS: dict[str, dict[str, str]] = {
    "one_device": {},
    "mirrored": {
        "custom_step_logs_reach_callbacks_and_history": (
            "a log a train_step computes from its own rows (batch_rows) is the mean over the "
            "replicas of each one's share (1 of 2 rows); Keras' fit under MirroredStrategy "
            "logs the same"
        ),
    },
    "multi_worker": {},
    "parameter_server": {},
}


def marks(name: str, strategy: str) -> list:
    """The expected-failure mark of `name` under `strategy`, if it is a known gap."""
    why = GAPS[strategy].get(name)
    if why is None:
        return []
    return [pytest.mark.xfail(strict=True, reason=f"known gap (issue #23): {why}")]


def count() -> dict[str, int]:
    """Known gaps per strategy."""
    return {strategy: len(gaps) for strategy, gaps in GAPS.items()}
