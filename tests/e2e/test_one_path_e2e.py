"""What `tfdist.fit` is given reaches the loop under `multi_worker` x2 too.

The same checks as `tests/tfdist/training/test_one_path.py` (mirrored, one process), run
on both workers of a real cluster through `tfdist.launch`: local SGD leaves the workers'
weights apart between syncs and equal at them; a recompile and a frozen layer take effect;
and `shard_policy` reaches the data layer (every worker reading everything trains another
model than workers dealt their parts).
"""

import json
import os

import numpy as np

import tfdist

STEPS = 16  # Of the 20 batches of one_path_checks' 1,280 rows at 64.


def _worker_index() -> int:
    return json.loads(os.environ["TF_CONFIG"])["task"]["index"]


def run_checks(out_dir):
    """On every worker: the collective checks; writes this worker's weights at each batch."""
    import keras
    from one_path_checks import (
        X,
        Y,
        check_frozen_layer_stays_frozen,
        check_recompile_takes_effect,
        replica_weights_by_batch,
    )

    dist = tfdist.make_strategy("multi_worker")
    seen = replica_weights_by_batch(dist, sync_every=8, steps=STEPS)
    np.save(os.path.join(out_dir, f"worker{_worker_index()}.npy"), np.stack([s[0] for s in seen]))
    check_recompile_takes_effect(dist)
    check_frozen_layer_stays_frozen(dist)
    finals = {}
    for policy in ("data", "off"):
        keras.utils.set_random_seed(0)
        with dist.scope():
            model = keras.Sequential(
                [keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10)]
            )
            model.compile(
                optimizer=keras.optimizers.SGD(0.1),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            )
        tfdist.fit(model, X, Y, batch_size=64, shuffle=False, shard_policy=policy, verbose=0)
        finals[policy] = np.concatenate([np.ravel(w) for w in model.get_weights()])
    return {"shard_policy_changes_weights": bool(not np.allclose(finals["data"], finals["off"]))}


def test_one_path_under_multi_worker(tmp_path):
    result = tfdist.launch(run_checks, str(tmp_path), strategy="multi_worker", num_workers=2)
    assert result["shard_policy_changes_weights"]
    first, second = (np.load(tmp_path / f"worker{i}.npy") for i in range(2))
    assert first.shape[0] == STEPS
    for batch in range(STEPS):
        distance = float(np.abs(first[batch] - second[batch]).max())
        if (batch + 1) % 8 == 0:
            assert distance == 0.0, batch
        else:
            assert distance > 1e-6, batch
