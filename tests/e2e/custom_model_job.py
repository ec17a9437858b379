"""A user's own job through the Python API: a functional Keras 3 model with two named
inputs (a dict of features) compiled with a custom loss function, trained by the Trainer on
a dataset function under MultiWorkerMirroredStrategy.

Run by test_custom_model_e2e.py as two worker processes; each writes OUT_DIR/worker_<i>.json.
"""

import json
import os
import sys

import keras
import numpy as np
import tensorflow as tf

import tfdist
from tfdist.data.pipeline import load_digits_arrays

GLOBAL_BATCH = 32


def build_two_tower():
    pixels = keras.Input(shape=(64,), name="pixels")
    stats = keras.Input(shape=(2,), name="stats")
    hidden = keras.layers.Dense(32, activation="relu")(pixels)
    joined = keras.layers.Concatenate()([hidden, keras.layers.Dense(4)(stats)])
    return keras.Model({"pixels": pixels, "stats": stats}, keras.layers.Dense(10)(joined))


def smoothed_loss(labels, logits):
    """Label-smoothed cross-entropy, one value per example."""
    onehot = tf.one_hot(tf.cast(labels, tf.int32), 10) * 0.9 + 0.01
    return tf.nn.softmax_cross_entropy_with_logits(onehot, logits)


def dataset_fn(context):
    images, labels = load_digits_arrays()
    flat = images.reshape(len(images), 64)
    features = {"pixels": flat, "stats": np.stack([flat.mean(1), flat.std(1)], 1)}
    dataset = tf.data.Dataset.from_tensor_slices((features, labels))
    dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
    batch = context.get_per_replica_batch_size(GLOBAL_BATCH)
    return (
        dataset.shuffle(2000, seed=context.input_pipeline_id)
        .repeat()
        .batch(batch, drop_remainder=True)
    )


def main(out_dir):
    distribution = tfdist.make_strategy("multi_worker", cluster=tfdist.read_tf_config())
    keras.utils.set_random_seed(1)
    with distribution.scope():
        model = build_two_tower()
        model.compile(
            optimizer=keras.optimizers.RMSprop(3e-3),
            loss=smoothed_loss,
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
    trainer = tfdist.Trainer(distribution, model, tfdist.LoopConfig(steps_per_loop=10))
    history = trainer.fit(dataset_fn, epochs=3, steps_per_epoch=40, global_batch_size=GLOBAL_BATCH)
    result = {
        "num_replicas": distribution.num_replicas,
        "losses": history.history["loss"],
        "accuracies": history.history["accuracy"],
        "weights_sum": float(sum(np.abs(np.asarray(w)).sum() for w in model.weights)),
        "final_step": history.final_step,
    }
    with open(os.path.join(out_dir, f"worker_{distribution.role.index}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
