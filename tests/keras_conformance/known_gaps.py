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
    "multi_worker": {
        "custom_step_logs_reach_callbacks_and_history": (
            "a log a train_step computes from its own rows (batch_rows) is the mean over the "
            "replicas of each one's share (1 of 2 rows); Keras' fit under MirroredStrategy "
            "logs the same"
        ),
    },
    "parameter_server": {
        "backup_and_restore_every_two_batches": (
            "events: hooks other than the training batch hooks differ: call 1: Keras "
            "('epoch_begin', 1, []), tfdist ('epoch_begin', 0, [])"
        ),
        "dataset_finite_with_validation_dataset": (
            "events: hooks other than the training batch hooks differ: call 3: Keras "
            "('test_batch_begin', 0, []), tfdist ('test_end', None, ['loss', 'm"
        ),
        "dataset_of_unknown_length": (
            "events: training batch run 0: train_batch_begin: Keras [(0, []), (1, []), (2, "
            "[]), (3, [])], tfdist [(0, []), (1, []), (2, [])]"
        ),
        "generator_for_one_epoch": (
            "tfdist raised ConfigError: x is a generator with no length (it is infinite or "
            "cannot be counted without consuming it); pass steps_per_epoch="
        ),
        "steps_per_epoch_above_the_batches_of_arrays": (
            "events: training batch run 0: train_batch_begin: Keras [(0, []), (1, []), (2, "
            "[]), (3, []), (4, [])], tfdist [(0, []), (1, []), (2, []), ("
        ),
        "steps_per_epoch_below_the_batches_of_arrays": (
            "events: training batch run 1: train_batch_begin: Keras [(0, []), (1, [])], "
            "tfdist [(0, []), (1, []), (2, [])]"
        ),
        "stop_training_from_a_batch_hook": (
            "events: training batch run 0: train_batch_begin: Keras [(0, []), (1, [])], "
            "tfdist [(0, []), (1, []), (2, []), (3, []), (4, []), (5, [])]"
        ),
        "terminate_on_nan_stops_at_the_nan_batch": (
            "events: training batch run 0: train_batch_begin: Keras [(0, []), (1, []), (2, "
            "[])], tfdist [(0, []), (1, []), (2, []), (3, []), (4, [])]"
        ),
    },
}


def marks(name: str, strategy: str) -> list:
    """The expected-failure mark of `name` under `strategy`, if it is a known gap."""
    why = GAPS[strategy].get(name)
    if why is not None:
        return [pytest.mark.xfail(strict=True, reason=f"known gap (issue #23): {why}")]
    return []


def count() -> dict[str, int]:
    """Known gaps per strategy."""
    return {strategy: len(gaps) for strategy, gaps in GAPS.items()}
