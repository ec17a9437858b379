"""Which examples the interrupted epoch sees when a job resumes with fewer workers.

The trainer resumes at global step S by having each input pipeline skip the batches of
its first S steps (`tfdist.training.schedule.skipping`); the global batch, and so the
steps of an epoch, stay the same when `--min_workers` drops a worker. These tests run the
real dataset functions for 3 pipelines up to step S (the last checkpoint), then for 2
pipelines from S, as the job does, and count how often each example is read per epoch:

- epochs that end before S, and every epoch after the interrupted one: each example
  exactly once (the 3-way, then the 2-way partition);
- under the `data` policy (`auto` on arrays) the interrupted epoch too, shuffled or not:
  each epoch's order of the whole split is dealt among the pipelines, so step t reads
  positions [t*B, (t+1)*B) of it whatever the number of pipelines;
- under a policy whose parts are fixed and shuffled apart (`random`, `file`, `hash`),
  the examples before S follow the 3-way partition and those after it the 2-way one:
  the interrupted epoch reads as many examples as any epoch, some twice and as many not
  at all.
"""

import collections
import functools

import numpy as np
import pytest
import tensorflow as tf

from tfdist.data.pipeline import make_dataset_fn, numpy_source
from tfdist.training.inputs import skipping

NUM_EXAMPLES, GLOBAL_BATCH = 240, 12  # 20 steps per epoch; 2 and 3 divide the batch.
STEPS_PER_EPOCH = NUM_EXAMPLES // GLOBAL_BATCH
RESUMED_AT = STEPS_PER_EPOCH + 7  # The last checkpoint: step 7 of the second epoch.


def _steps(dataset_fn, pipelines, steps):
    """The ids each global step reads: `steps` steps of `pipelines` pipelines together."""
    readers = [
        iter(dataset_fn(tf.distribute.InputContext(pipelines, p, pipelines)))
        for p in range(pipelines)
    ]
    return [
        [int(i) for reader in readers for i in next(reader)[0].numpy()[:, 0]] for _ in range(steps)
    ]


@functools.cache
def _run(shuffle, policy="data"):
    """Steps 0..S-1 with 3 workers, then S.. to the end of the next epoch with 2."""
    ids = np.arange(NUM_EXAMPLES)
    source = numpy_source(ids[:, None].astype(np.float32), ids % 4)
    dataset_fn = make_dataset_fn(
        source,
        "train",
        global_batch_size=GLOBAL_BATCH,
        training=True,
        shuffle=shuffle,
        shard_policy=policy,
        seed=3,
    )
    before = _steps(dataset_fn, 3, RESUMED_AT)
    after = _steps(skipping(dataset_fn, RESUMED_AT), 2, 3 * STEPS_PER_EPOCH - RESUMED_AT)
    steps = before + after
    return [
        collections.Counter(
            i for step in steps[e * STEPS_PER_EPOCH : (e + 1) * STEPS_PER_EPOCH] for i in step
        )
        for e in range(3)
    ]


def _exactly_once(counts):
    return sorted(counts) == list(range(NUM_EXAMPLES)) and set(counts.values()) == {1}


@pytest.mark.parametrize("shuffle, policy", [(False, "data"), (True, "data"), (True, "random")])
def test_epochs_before_and_after_the_interrupted_one_see_each_example_once(shuffle, policy):
    first, _, third = _run(shuffle, policy)
    assert _exactly_once(first) and _exactly_once(third)


@pytest.mark.parametrize("shuffle", [False, True])
def test_under_the_data_policy_the_interrupted_epoch_sees_each_example_once_too(shuffle):
    _, interrupted, _ = _run(shuffle, "data")
    assert _exactly_once(interrupted)


def test_with_fixed_parts_the_interrupted_epoch_repeats_some_examples_and_misses_as_many():
    _, interrupted, _ = _run(True, "random")
    assert sum(interrupted.values()) == NUM_EXAMPLES  # As many reads as any epoch.
    twice = [i for i, count in interrupted.items() if count == 2]
    missed = NUM_EXAMPLES - len(interrupted)
    assert max(interrupted.values()) <= 2 and len(twice) == missed > 0


def test_under_the_data_policy_a_step_reads_the_same_examples_for_any_number_of_workers():
    ids = np.arange(NUM_EXAMPLES)
    source = numpy_source(ids[:, None].astype(np.float32), ids % 4)
    dataset_fn = make_dataset_fn(
        source, "train", global_batch_size=GLOBAL_BATCH, training=True, shuffle=True, seed=3
    )
    steps = {
        pipelines: [sorted(step) for step in _steps(dataset_fn, pipelines, 25)]
        for pipelines in (1, 2, 3)
    }
    assert steps[1] == steps[2] == steps[3]
    assert steps[1][0] != steps[1][STEPS_PER_EPOCH]  # Each epoch is dealt in a new order.
