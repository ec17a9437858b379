import keras
import numpy as np
import tensorflow as tf

from tfdist.data.pipeline import load_source, make_dataset_fn
from tfdist.distribute.partitioning import TablePartitioner
from tfdist.distribute.strategies import make_strategy
from tfdist.layers import ShardedEmbedding, sharded_embeddings, sharding_tables
from tfdist.models import build_model
from tfdist.training.trainer import Trainer


def test_partitioner_splits_only_tables():
    partitioner = TablePartitioner(max_shards=3, min_shard_bytes=1024)
    shape = tf.TensorShape([600, 16])
    assert partitioner(shape, tf.float32) == [1, 1]
    with sharding_tables():
        assert partitioner(shape, tf.float32) == [3, 1]
        assert partitioner(tf.TensorShape([4, 4]), tf.float32) == [1, 1]  # Too small to split.
    assert partitioner(shape, tf.float32) == [1, 1]


def test_outside_parameter_server_the_table_is_a_keras_weight():
    layer = ShardedEmbedding(10, 4, seed=3)
    out = layer(tf.constant([1, 2, 2]))
    assert out.shape == (3, 4) and not layer.is_sharded
    assert [w.name for w in layer.trainable_weights] == ["table"]
    np.testing.assert_allclose(out[1], out[2])
    assert layer.placement()[0]["rows"] == 10 and layer.table_value().shape == (10, 4)


def test_recommender_trains_on_one_device():
    source = load_source("interactions", num_examples=8192)
    distribution = make_strategy("one_device")
    with distribution.scope():
        model = build_model(
            "recommender",
            input_shape=source.input_shape,
            num_classes=source.num_classes,
            vocab_sizes=source.vocab_sizes,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(0.01),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    assert sharded_embeddings(model) == []
    history = Trainer(distribution, model).fit(
        make_dataset_fn(source, "train", global_batch_size=256, training=True),
        epochs=3,
        steps_per_epoch=32,
        global_batch_size=256,
    )
    assert history.history["loss"][-1] < history.history["loss"][0]
