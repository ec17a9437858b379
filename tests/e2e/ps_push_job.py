"""Local-step pushes of two parameter-server workers at once (`WorkerCopies.push`).

Run as the ``parameter_server`` chief of 1 or 2 workers and 1 ps by
test_ps_local_steps_e2e.py through ``launch.run_local``:

    python ps_push_job.py OUTER_OPTIMIZER OUTER_MOMENTUM OUT_JSON

Schedules 40 rounds that each fetch the weights, set the worker's copy to them plus 1
(a round whose change is exactly 1 in every weight), and push, the outer step at rate 1.
Two workers run them at the same time, so pushes meet on the ps; one runs them in turn.
Writes to OUT_JSON how far each weight moved (its distinct values), the pushes counted,
and how many rounds each worker ran.
"""

import json
import sys

import keras
import numpy as np
import tensorflow as tf

import tfdist
from tfdist.config import LocalSGDConfig
from tfdist.training.ps_local_steps import WorkerCopies

ROUNDS = 40


def main(outer_optimizer, outer_momentum, out_json):
    distribution = tfdist.make_strategy("parameter_server", cluster=tfdist.read_tf_config())
    strategy, coordinator = distribution.strategy, distribution.coordinator
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        sgd = keras.optimizers.SGD(0.1)
        sgd.build(model.trainable_variables)
    before = [v.numpy() for v in model.trainable_variables]
    config = LocalSGDConfig(
        sync_every=8,
        outer_optimizer=outer_optimizer,
        outer_learning_rate=1.0,
        outer_momentum=outer_momentum,
    )
    n = distribution.num_workers
    copies = WorkerCopies(config, num_workers=n, strategy=strategy, model=model, optimizer=sgd)

    @tf.function
    def round_of_plus_one():
        start = copies.fetch()
        for copy, value in zip(copies.weights, start, strict=True):
            copy.assign(value + 1.0)
        copies.push(start)
        return tf.distribute.coordinator.experimental_get_current_worker_index()

    results = [coordinator.schedule(round_of_plus_one) for _ in range(ROUNDS)]
    coordinator.join()
    workers = [int(result.fetch()) for result in results]
    after = [v.numpy() for v in model.trainable_variables]
    moved = sorted({float(x) for a, b in zip(after, before, strict=True) for x in np.ravel(a - b)})
    report = {
        "moved": moved,
        "pushes": int(copies.updates.numpy()),
        "rounds_by_worker": [workers.count(index) for index in range(n)],
    }
    with open(out_json, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), sys.argv[3])
