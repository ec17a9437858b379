"""Shard policies in one process: which ids each input pipeline reads, and the epoch."""

import collections

import data_files
import numpy as np
import pytest
import tensorflow as tf

from tfdist.config import ConfigError
from tfdist.data.pipeline import load_source, make_dataset_fn, numpy_source, per_worker_dataset_fn
from tfdist.data.sharding import resolve_policy

IDS = np.arange(60)


def _context(pipelines, index):
    return tf.distribute.InputContext(
        num_input_pipelines=pipelines, input_pipeline_id=index, num_replicas_in_sync=pipelines
    )


def _source(ids=IDS):
    return numpy_source(ids[:, None].astype(np.float32), ids % 3, ids=ids)


def _pass(source, policy, pipelines, seed=0):
    """Each pipeline's ids, read once."""
    fn = make_dataset_fn(
        source, "train", global_batch_size=12, training=False, shard_policy=policy, seed=seed
    )
    return [
        [int(i) for x, _ in fn(_context(pipelines, p)) for i in x.numpy()[:, 0]]
        for p in range(pipelines)
    ]


def _epochs(source, policy, pipelines, *, batch=6, count=2, shuffle=True):
    """Each epoch's ids over all pipelines, for ``count`` epochs of steps_per_epoch steps."""
    fn = make_dataset_fn(
        source,
        "train",
        global_batch_size=batch,
        training=True,
        shard_policy=policy,
        shuffle=shuffle,
    )
    steps = source.num_train // batch
    iterators = [iter(fn(_context(pipelines, p))) for p in range(pipelines)]
    return [
        [int(i) for it in iterators for _ in range(steps) for i in next(it)[0].numpy()[:, 0]]
        for _ in range(count)
    ]


@pytest.mark.parametrize("policy", ["data", "random", "hash", "auto"])
@pytest.mark.parametrize("pipelines", [1, 2, 3])
def test_one_pass_reads_every_example_once(policy, pipelines):
    parts = _pass(_source(), policy, pipelines)
    assert sorted(sum(parts, [])) == list(IDS)
    if policy in ("data", "random", "auto"):
        assert {len(p) for p in parts} == {60 // pipelines}


@pytest.mark.parametrize("policy", ["data", "random"])
def test_training_epochs_are_exactly_once_and_reshuffled(policy):
    first, second = _epochs(_source(), policy, 3)
    assert sorted(first) == sorted(second) == list(IDS)
    assert first != second


def test_epoch_with_a_remainder_skips_other_examples_each_epoch():
    epochs = _epochs(_source(), "data", 2, batch=8, count=3)  # 60 = 7 x 8 + 4.
    for ids in epochs:
        assert len(ids) == 56 and len(set(ids)) == 56  # At most once; 4 left for later.
    assert len({frozenset(set(IDS) - set(ids)) for ids in epochs}) > 1


def test_noshuffle_repeats_the_same_epoch():
    first, second = _epochs(_source(), "data", 2, shuffle=False)
    assert first == second and sorted(first) == list(IDS)


def test_off_gives_every_pipeline_everything():
    parts = _pass(_source(), "off", 2)
    assert parts[0] == parts[1] == list(IDS)


def test_random_partition_is_fixed_by_seed():
    same, again, other = (_pass(_source(), "random", 2, seed=s) for s in (4, 4, 5))
    assert same == again and same != other


def test_hash_keeps_an_example_on_its_pipeline_whatever_the_order():
    order = np.random.default_rng(0).permutation(60)
    parts = [set(p) for p in _pass(_source(), "hash", 3)]
    moved = [set(p) for p in _pass(_source(IDS[order]), "hash", 3)]
    assert parts == moved
    grown = [set(p) for p in _pass(_source(np.arange(90)), "hash", 3)]  # More data later.
    assert all(old <= new for old, new in zip(parts, grown, strict=False))


@pytest.fixture(scope="module")
def uneven(tmp_path_factory):
    directory = tmp_path_factory.mktemp("uneven")
    pattern = data_files.write_tfrecords(str(directory), [30, 18, 12])
    return load_source("tfrecord", train_files=pattern, id_key="id")


def test_file_policy_reads_whole_files(uneven):
    parts = _pass(uneven, "file", 2)
    assert sorted(parts[0]) == list(range(30)) + list(range(48, 60))
    assert sorted(parts[1]) == list(range(30, 48))
    assert _pass(uneven, "auto", 3) == _pass(uneven, "file", 3)


def test_uneven_files_are_not_exactly_once_per_training_epoch(uneven):
    (ids,) = _epochs(uneven, "file", 2, count=1)
    counts = collections.Counter(ids)
    assert len(ids) == 60 and max(counts.values()) > 1 and len(counts) < 60


def test_fewer_files_than_pipelines_under_file(uneven):
    with pytest.raises(
        ConfigError,
        match=r"shard_policy 'file' needs at least one file per "
        r"input pipeline, but train_files \('.*-\*\.tfrecord'\) "
        r"has 3 file\(s\) for 4 input pipelines; .*"
        r"shard_policy='data'",
    ):
        _pass(uneven, "file", 4)
    assert resolve_policy("auto", num_files=3, num_pipelines=4, what="x") == "data"
    with pytest.raises(ConfigError, match=r"is not read from files; use shard_policy='data'"):
        _pass(_source(), "file", 2)


def test_unknown_policy_lists_choices():
    with pytest.raises(
        ConfigError,
        match=r"Unknown shard_policy 'rows'. Expected one of: "
        r"auto, file, data, hash, random, off",
    ):
        make_dataset_fn(_source(), "train", global_batch_size=6, training=True, shard_policy="rows")


def test_tf_auto_sharding_is_off():
    dataset = make_dataset_fn(_source(), "train", global_batch_size=6, training=True)(
        _context(2, 0)
    )
    assert (
        dataset.options().experimental_distribute.auto_shard_policy
        == tf.data.experimental.AutoShardPolicy.OFF
    )


def test_pipeline_id_may_be_a_tensor():
    """As on a parameter-server worker: the worker index is known only in the graph."""
    fn = make_dataset_fn(
        _source(), "train", global_batch_size=6, training=False, shard_policy="random"
    )
    for p in range(2):
        traced = tf.function(
            lambda index: fn(tf.distribute.InputContext(2, index, 1)).reduce(
                tf.constant(0.0), lambda total, batch: total + tf.reduce_sum(batch[0])
            )
        )
        expected = sum(_pass(_source(), "random", 2)[p])
        assert float(traced(tf.constant(p, tf.int64))) == expected
    tf.random.set_seed(0)  # As the job does; a tensor must not reach shuffle's seed then.
    training = make_dataset_fn(_source(), "train", global_batch_size=6, training=True)
    on_worker = tf.function(
        lambda index: next(iter(training(tf.distribute.InputContext(2, index, 1))))[0]
    )
    assert on_worker(tf.constant(1, tf.int64)).shape == (6, 1)
    assert callable(per_worker_dataset_fn(fn, num_workers=2))
