"""A first-batch peek never reads through a `.cache()` (tfdist.data.peek)."""

import keras
import tensorflow as tf

from tfdist.data.peek import first_element, has_cache
from tfdist.training.data_checks import dataset_data

BASE = tf.data.Dataset.range(12).batch(3)


def test_a_cache_anywhere_upstream_is_found():
    assert not has_cache(BASE)
    assert not has_cache(BASE.shuffle(4).repeat().prefetch(1))
    assert has_cache(BASE.cache())
    assert has_cache(BASE.cache().map(lambda x: x * 2).prefetch(2))
    assert has_cache(tf.data.Dataset.zip((BASE, BASE.cache())))
    assert has_cache(BASE.concatenate(BASE.cache()))


def test_a_dataset_without_a_cache_is_peeked():
    read, first = first_element(BASE.map(lambda x: (tf.cast(x, tf.float32), x)))

    assert read
    assert first[1].numpy().tolist() == [0, 1, 2]


def test_a_cached_dataset_is_checked_by_its_spec_alone_and_every_pass_reads_it_whole():
    images = tf.data.Dataset.from_tensor_slices((tf.zeros((40, 4)), tf.range(40) % 3)).batch(4)
    cached = images.map(lambda x, y: (x + 1.0, y), num_parallel_calls=2).cache().prefetch(2)

    for _ in range(20):  # A peek here truncated the cache now and then (1 run in 20).
        data = dataset_data(cached, name="dataset x")
        assert data.targets[0].values is None  # Not read: the spec alone.
        assert data.targets[0].shape == (None,)
        assert sum(1 for _ in cached) == 10


def test_the_text_tutorials_pipeline_is_seen_as_cached(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.txt").write_text("some words")
    raw = keras.utils.text_dataset_from_directory(tmp_path, batch_size=2)

    assert not has_cache(raw)
    assert has_cache(raw.map(lambda x, y: (x, y)).cache().prefetch(2))
