import numpy as np
import pytest
import tensorflow as tf
import tfds_fixture

from tfdist.config import ConfigError
from tfdist.data.pipeline import (
    load_digits_arrays,
    load_source,
    make_dataset_fn,
    steps_per_epoch,
    synthetic_batch,
)


def _context(pipelines, index, replicas):
    return tf.distribute.InputContext(
        num_input_pipelines=pipelines, input_pipeline_id=index, num_replicas_in_sync=replicas
    )


def _first_batch(dataset_fn, context):
    features, labels = next(iter(dataset_fn(context)))
    return features.numpy(), labels.numpy()


def test_digits_are_real_and_split():
    images, labels = load_digits_arrays()
    assert images.shape == (1797, 8, 8) and 0.0 <= images.min() and images.max() == 1.0
    assert sorted(np.unique(labels)) == list(range(10))
    source = load_source("digits")
    assert (source.num_train, source.num_validation) == (1500, 297)
    assert steps_per_epoch(source, 64) == 23


def test_workers_split_the_global_batch_without_overlap():
    source = load_source("digits")
    fn = make_dataset_fn(source, "train", global_batch_size=64, training=True, shuffle=False)
    whole_x, _ = _first_batch(fn, _context(1, 0, 1))
    parts = [_first_batch(fn, _context(2, i, 2))[0] for i in range(2)]
    assert parts[0].shape == (32, 8, 8)
    together = np.concatenate(parts)
    assert sorted(map(bytes, together)) == sorted(map(bytes, whole_x))


def test_shuffle_is_seeded_and_changes_each_epoch():
    source = load_source("digits")

    def epochs(seed):
        fn = make_dataset_fn(source, "train", global_batch_size=1500, training=True, seed=seed)
        it = iter(fn(None))
        return [next(it)[1].numpy() for _ in range(2)]

    first, again, other = epochs(1), epochs(1), epochs(2)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], other[0])
    assert sorted(first[0]) == sorted(first[1])  # Each epoch is a permutation of the split.


def test_validation_keeps_every_example_once():
    source = load_source("digits")
    fn = make_dataset_fn(source, "validation", global_batch_size=64, training=False)
    counts = [sum(int(y.shape[0]) for _, y in fn(_context(2, i, 2))) for i in range(2)]
    assert sum(counts) == 297


def test_synthetic_is_deterministic_and_learnable():
    x1, y1 = synthetic_batch(tf.range(0, 512, dtype=tf.int64), 3)
    x2, y2 = synthetic_batch(tf.range(0, 512, dtype=tf.int64), 3)
    assert np.array_equal(x1.numpy(), x2.numpy()) and np.array_equal(y1.numpy(), y2.numpy())
    assert x1.shape == (512, 784) and len(np.unique(y1.numpy())) == 10
    source = load_source("synthetic", num_examples=2000, seed=3)
    assert (source.num_train, source.num_validation, source.input_shape) == (2000, 200, (784,))
    # A least-squares linear read-out separates the classes: the labels are learnable.
    x, y = (t.numpy() for t in synthetic_batch(tf.range(0, 2048, dtype=tf.int64), 3))
    onehot = np.eye(10)[y]
    weights, *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], onehot, rcond=None)
    assert (np.argmax(np.c_[x, np.ones(len(x))] @ weights, 1) == y).mean() > 0.8


def test_batch_not_divisible_by_replicas():
    fn = make_dataset_fn(load_source("digits"), "train", global_batch_size=30, training=True)
    with pytest.raises(
        ConfigError,
        match=r"global_batch_size \(30\) must be divisible by the "
        r"number of replicas \(4\); use 28 or 32",
    ):
        fn(_context(1, 0, 4))


def test_batch_larger_than_dataset():
    with pytest.raises(ConfigError, match=r"larger than the 'digits' training split \(1500"):
        steps_per_epoch(load_source("digits"), 4096)


def test_unknown_dataset_lists_choices():
    with pytest.raises(
        ConfigError,
        match=r"Unknown dataset 'no_such_data_xyz'. Expected one of: "
        r"digits, synthetic, interactions, tfrecord, csv, npz, "
        r"image_folder, or a TFDS",
    ):
        load_source("no_such_data_xyz")


def test_tfds_dataset_not_on_disk_says_where_and_how(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"TFDS dataset 'mnist' is not prepared on disk "
        r"\(looked in .*mnist.*\).*tfds build mnist",
    ):
        load_source("mnist", data_dir=str(tmp_path))


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    tfds_fixture.build(str(data_dir))
    return str(data_dir)


def test_tfds_dataset_on_disk_is_sharded_and_scaled(tfds_dir):
    source = load_source(tfds_fixture.NAME, data_dir=tfds_dir)
    assert (source.num_train, source.num_validation, source.num_classes) == (96, 32, 4)
    assert source.input_shape == (8, 8, 1)
    fn = make_dataset_fn(source, "validation", global_batch_size=8, training=False)
    seen = [int(y.shape[0]) for i in range(2) for _, y in fn(_context(2, i, 2))]
    assert sum(seen) == 32
    x, _ = next(iter(fn(None)))
    assert x.dtype == tf.float32 and float(tf.reduce_max(x)) <= 1.0
