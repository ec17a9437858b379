"""Training epochs of a part held in memory (tfdist.data.in_memory) against the streamed path."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from tfdist.data import sharding
from tfdist.data.in_memory import epochs_in_memory
from tfdist.data.pipeline import make_dataset_fn, numpy_source

IDS = np.arange(60)


def _source(ids=IDS):
    return numpy_source(ids[:, None].astype(np.float32), ids % 3, ids=ids)


def _epochs(pipelines, *, steps=10, count=2, policy="data", ids=IDS, seed=0):
    """Each epoch's ids over all pipelines (batch 6 over ``pipelines`` replicas)."""
    fn = make_dataset_fn(
        _source(ids),
        "train",
        global_batch_size=6,
        training=True,
        shard_policy=policy,
        steps_per_epoch=steps,
        seed=seed,
    )
    contexts = [tf.distribute.InputContext(pipelines, p, pipelines) for p in range(pipelines)]
    iterators = [iter(fn(context)) for context in contexts]
    return [
        [int(i) for it in iterators for _ in range(steps) for i in next(it)[0].numpy()[:, 0]]
        for _ in range(count)
    ]


@pytest.fixture(params=["in_memory", "streamed"])
def path(request, monkeypatch):
    if request.param == "streamed":  # No part fits: the shuffle-buffer path.
        monkeypatch.setattr(sharding, "CACHE_BYTES", 0)
    return request.param


@pytest.mark.parametrize("pipelines", [1, 2, 3])
def test_both_paths_give_exactly_once_reshuffled_epochs(path, pipelines):
    first, second = _epochs(pipelines)
    assert sorted(first) == sorted(second) == list(IDS)
    assert first != second


def test_both_paths_sample_without_repeats_when_the_epoch_is_shorter(path):
    epochs = _epochs(2, steps=4, count=3)  # 24 of each pipeline's 30 ids per epoch.
    assert all(len(ids) == len(set(ids)) == 24 for ids in epochs)
    assert len({frozenset(ids) for ids in epochs}) > 1


def test_a_longer_epoch_runs_whole_passes_one_after_another():
    for ids in _epochs(2, steps=15, count=2):  # 90 ids from 60: each 1 or 2 times.
        assert len(ids) == 90 and set(collections.Counter(ids).values()) == {1, 2}
    stream = _epochs(1, steps=25, count=1)[0]  # One pipeline: 150 ids = 2.5 passes.
    passes = [stream[start : start + 60] for start in (0, 60, 120)]
    assert all(len(set(p)) == len(p) for p in passes) and sorted(passes[0]) == list(IDS)
    assert passes[0] != passes[1]


def test_same_seed_same_order_other_seed_other_order():
    same, again, other = (_epochs(2, seed=s, count=1) for s in (3, 3, 4))
    assert same == again and same != other


def test_epochs_are_endless_and_an_empty_part_fails_instead_of_spinning():
    rows = tf.data.Dataset.from_tensor_slices(np.zeros([3, 2], np.float32))
    batches = epochs_in_memory(
        rows, max_rows=10, batch=2, epoch_examples=4, shuffle=True, seed=0, pipeline=0
    )
    assert batches.cardinality() == tf.data.INFINITE_CARDINALITY
    empty = epochs_in_memory(
        rows.take(0), max_rows=10, batch=2, epoch_examples=4, shuffle=True, seed=0, pipeline=0
    )
    with pytest.raises(tf.errors.FailedPreconditionError, match="infinite"):
        next(iter(empty))


def test_the_table_is_read_once():
    reads = tf.Variable(0)

    def counted(x):
        reads.assign_add(1)
        return x

    examples = tf.data.Dataset.range(8).map(counted)
    batches = epochs_in_memory(
        examples,
        max_rows=8,
        batch=4,
        epoch_examples=8,
        shuffle=True,
        seed=0,
        pipeline=tf.constant(1),
    )  # A parameter-server worker.
    ids = [b.numpy() for b in batches.take(6)]
    passes = [sorted(np.concatenate(ids[i : i + 2])) for i in (0, 2, 4)]
    assert passes == [list(range(8))] * 3 and int(reads.numpy()) == 8
