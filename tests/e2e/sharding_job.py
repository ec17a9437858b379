"""Collects the example ids each worker reads, for every shard policy, from real workers.

Run by test_sharding_e2e.py through ``launch.run_local``:

    python sharding_job.py OUT_DIR DATA_DIR [DISPATCHER]

- As a ``multi_worker`` worker it builds each case's dataset function, distributes it
  with the strategy (``distribute_datasets_from_function``) and records the ids of its
  local batches: two training epochs of ``steps_per_epoch`` steps and one pass of the
  same split read once (``training=False``). With DISPATCHER it also reads one pass
  through the tf.data service. Writes OUT_DIR/worker_<i>.json.
- As the ``parameter_server`` chief it schedules steps on the per-worker datasets
  (``ClusterCoordinator.create_per_worker_dataset``) and records which worker read
  which ids. Writes OUT_DIR/chief.json.

Every example's first feature is its id.
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf

import tfdist
from tfdist.data.pipeline import (
    make_dataset_fn,
    numpy_source,
    per_worker_dataset_fn,
    tfrecord_source,
)
from tfdist.data.service import ServiceTarget

NUM_EXAMPLES, GLOBAL_BATCH = 240, 12  # 240 = 20 global batches; 12 splits over 1, 2, 3.


def sources(data_dir):
    ids = np.arange(NUM_EXAMPLES)
    rng = np.random.default_rng(5)
    arrays = numpy_source(ids[:, None].astype(np.float32), ids % 4, ids=ids)
    # Same examples in another order: hash must place each on the same worker anyway.
    order = rng.permutation(NUM_EXAMPLES)
    reordered = numpy_source(ids[order, None].astype(np.float32), ids[order] % 4, ids=ids[order])
    even = tfrecord_source(train_files=os.path.join(data_dir, "even-*.tfrecord"), id_key="id")
    uneven = tfrecord_source(train_files=os.path.join(data_dir, "uneven-*.tfrecord"), id_key="id")
    return {"arrays": arrays, "reordered": reordered, "even": even, "uneven": uneven}


CASES = [  # (name, source, policy, seed, also two training epochs)
    ("data", "arrays", "data", 0, True),
    ("random", "arrays", "random", 0, True),
    ("random_again", "arrays", "random", 0, False),
    ("random_seed1", "arrays", "random", 1, False),
    ("hash", "arrays", "hash", 0, True),
    ("hash_reordered", "reordered", "hash", 0, False),
    ("off", "arrays", "off", 0, True),
    ("auto_arrays", "arrays", "auto", 0, False),
    ("file_even", "even", "file", 0, True),
    ("auto_even", "even", "auto", 0, False),
    ("file_uneven", "uneven", "file", 0, True),
    ("hash_files", "uneven", "hash", 0, False),
]


def _ids(strategy, value):
    parts = strategy.experimental_local_results(value)
    return [int(v) for part in parts for v in part.numpy()[:, 0]]


def multi_worker(out_dir, data_dir, dispatcher):
    distribution = tfdist.make_strategy("multi_worker", cluster=tfdist.read_tf_config())
    strategy = distribution.strategy
    found = sources(data_dir)
    steps = NUM_EXAMPLES // GLOBAL_BATCH
    result = {"num_workers": distribution.num_workers}
    workers, index = distribution.num_workers, distribution.role.index
    for name, source_name, policy, seed, train in CASES:
        source = found[source_name]
        if policy == "file" and workers > len(source.splits["train"].files):
            continue
        common = dict(global_batch_size=GLOBAL_BATCH, shard_policy=policy, seed=seed)
        # One pass over this worker's part, read with the context the strategy would give.
        once = make_dataset_fn(source, "train", training=False, **common)(
            tf.distribute.InputContext(workers, index, workers)
        )
        result[name] = {"pass": [[int(i) for i in x.numpy()[:, 0]] for x, _ in once]}
        if train:
            batches = iter(
                strategy.distribute_datasets_from_function(
                    make_dataset_fn(source, "train", training=True, **common)
                )
            )
            result[name]["epochs"] = [
                [_ids(strategy, next(batches)[0]) for _ in range(steps)] for _ in range(2)
            ]
    if dispatcher:
        target = ServiceTarget(dispatcher, "ids-one-pass")
        served = strategy.distribute_datasets_from_function(
            make_dataset_fn(
                found["arrays"],
                "train",
                global_batch_size=GLOBAL_BATCH,
                training=False,
                data_service=target,
            )
        )
        result["service"] = {"pass": [_ids(strategy, x) for x, _ in served]}
    given = []  # The context TensorFlow gives a dataset function, against the trainer's own.
    strategy.distribute_datasets_from_function(
        lambda context: given.append(context) or tf.data.Dataset.range(1)
    )
    direct = distribution.direct_input_context()
    result["contexts"] = [
        [c.num_input_pipelines, c.input_pipeline_id, c.num_replicas_in_sync]
        for c in (given[0], direct)
    ]
    with open(os.path.join(out_dir, f"worker_{distribution.role.index}.json"), "w") as f:
        json.dump(result, f)


def parameter_server(out_dir, data_dir, dispatcher):
    distribution = tfdist.make_strategy("parameter_server", cluster=tfdist.read_tf_config())
    coordinator, workers = distribution.coordinator, distribution.num_workers
    found = sources(data_dir)
    steps = NUM_EXAMPLES // GLOBAL_BATCH

    @tf.function
    def read(iterator):
        batch = iterator.get_next_as_optional()
        worker = tf.distribute.coordinator.experimental_get_current_worker_index()
        if batch.has_value():
            return worker, tf.cast(batch.get_value()[0][:, 0], tf.int64)
        return worker, tf.zeros([0], tf.int64)

    def collect(dataset_fn, count=None):
        """``count`` reads, or (None) reads until every worker's iterator is exhausted."""
        iterator = iter(
            coordinator.create_per_worker_dataset(
                per_worker_dataset_fn(dataset_fn, num_workers=workers)
            )
        )
        reads, drained = [], set()
        while len(drained) < workers and len(reads) < 50 * steps:
            results = [
                coordinator.schedule(read, args=(iterator,)) for _ in range(count or 2 * workers)
            ]
            coordinator.join()
            for worker, ids in (r.fetch() for r in results):
                reads.append((int(worker), [int(i) for i in ids]))
                if not len(ids):
                    drained.add(int(worker))
            if count:
                break
        return reads

    result = {"num_workers": workers, "parts": {}}
    for policy in ("data", "random", "hash"):
        common = dict(global_batch_size=GLOBAL_BATCH, shard_policy=policy)
        source = found["arrays"]
        result[policy] = {
            "epochs": collect(make_dataset_fn(source, "train", training=True, **common), 2 * steps),
            "pass": collect(make_dataset_fn(source, "train", training=False, **common)),
        }
        result["parts"][policy] = [
            sorted(
                int(x[0])
                for x, _ in source.read(
                    "train", tf.distribute.InputContext(workers, w, 1), shard_policy=policy
                )
            )
            for w in range(workers)
        ]
    if dispatcher:
        target = ServiceTarget(dispatcher, "ps-one-pass")
        result["service"] = {
            "pass": collect(
                make_dataset_fn(
                    found["arrays"],
                    "train",
                    global_batch_size=GLOBAL_BATCH,
                    training=False,
                    data_service=target,
                )
            )
        }
    with open(os.path.join(out_dir, "chief.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    out, data = sys.argv[1], sys.argv[2]
    address = sys.argv[3] if len(sys.argv) > 3 else None
    if tfdist.read_tf_config().has_ps:
        parameter_server(out, data, address)
    else:
        multi_worker(out, data, address)
