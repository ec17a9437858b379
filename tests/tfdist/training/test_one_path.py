"""What `tfdist.fit` is given reaches the loop: local SGD, a recompile, a frozen layer.

Under `mirrored` on two logical CPUs here; `tests/e2e/test_one_path_e2e.py` runs the same
checks (`one_path_checks.py`) under `multi_worker` x2.
"""

import numpy as np
import pytest
from one_path_checks import (
    check_frozen_layer_stays_frozen,
    check_recompile_takes_effect,
    replica_weights_by_batch,
)

import tfdist


@pytest.fixture(scope="module")
def dist():
    return tfdist.make_strategy("mirrored", cluster=None)


def _distance(weights):
    return float(np.abs(weights[0] - weights[1]).max())


def test_sync_every_leaves_the_replicas_apart_between_syncs_and_equal_at_them(dist):
    seen = replica_weights_by_batch(dist, sync_every=8, steps=16)
    assert len(seen) == 16
    for batch, weights in enumerate(seen):
        if (batch + 1) % 8 == 0:
            assert _distance(weights) == 0.0, batch  # Averaged at steps 8 and 16.
        else:
            assert _distance(weights) > 1e-6, batch  # Each replica stepped on its own batches.


def test_synchronous_training_keeps_the_replicas_equal_at_every_batch(dist):
    seen = replica_weights_by_batch(dist, sync_every=1, steps=8)
    assert all(_distance(weights) == 0.0 for weights in seen)


def test_recompiling_with_another_optimizer_loss_and_metrics_takes_effect(dist):
    check_recompile_takes_effect(dist)


def test_a_layer_frozen_before_a_recompile_stays_frozen(dist):
    check_frozen_layer_stays_frozen(dist)
