"""TensorFlow's "Multi-worker training with Keras" tutorial (mnist_setup.py and main.py).

As the tutorial writes it, with the 8×8 digits in place of MNIST (so 8×8 shapes and a
learning rate of 0.1: at the tutorial's 0.001 its 210 steps leave this model at chance on
the digits, 12% accuracy, where nothing could be compared), and
`multi_worker_model.fit(...)` → `tfdist.fit(multi_worker_model, ...)`. Run as a script it
is the tutorial's main.py: `TF_CONFIG` names the workers, TensorFlow's own
`MultiWorkerMirroredStrategy` is built from it, and the dataset repeats forever with
`steps_per_epoch` bounding the epochs. Usage: ``python multi_worker_tutorial.py OUT_DIR``;
each worker writes ``OUT_DIR/tutorial_worker_<index>.json`` with its History.

`run(strategy, fit)` is the same program under any strategy (programs_job.py).
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf
from offline_data import digits

PER_WORKER_BATCH_SIZE = 64
NUM_WORKERS = 2  # The tutorial's cluster; `run` keeps its global batch under any strategy.


def mnist_dataset(batch_size):
    (x_train, y_train), _ = digits()
    # The tutorial divides MNIST's bytes by 255 here; the digits are already in [0, 1].
    x_train = x_train / np.float32(1)
    y_train = y_train.astype(np.int64)
    train_dataset = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(60000)
        .repeat()
        .batch(batch_size)
    )
    return train_dataset


def build_and_compile_cnn_model():
    model = tf.keras.Sequential(
        [
            tf.keras.layers.InputLayer(shape=(8, 8)),
            tf.keras.layers.Reshape(target_shape=(8, 8, 1)),
            tf.keras.layers.Conv2D(32, 3, activation="relu"),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(128, activation="relu"),
            tf.keras.layers.Dense(10),
        ]
    )
    model.compile(
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=tf.keras.optimizers.SGD(learning_rate=0.1),
        metrics=["accuracy"],
    )
    return model


def run(strategy, fit):
    """The tutorial's main.py under `strategy`; returns the History's dict."""
    global_batch_size = PER_WORKER_BATCH_SIZE * NUM_WORKERS
    multi_worker_dataset = mnist_dataset(global_batch_size)
    with strategy.scope():
        multi_worker_model = build_and_compile_cnn_model()
    history = fit(multi_worker_model, multi_worker_dataset, epochs=3, steps_per_epoch=70)
    return {"history": history.history}


def main():
    import tfdist

    out_dir = sys.argv[1]
    # main.py from here on, but for the fit call and writing what it returned.
    per_worker_batch_size = 64
    tf_config = json.loads(os.environ["TF_CONFIG"])
    num_workers = len(tf_config["cluster"]["worker"])

    strategy = tf.distribute.MultiWorkerMirroredStrategy()

    global_batch_size = per_worker_batch_size * num_workers
    multi_worker_dataset = mnist_dataset(global_batch_size)

    with strategy.scope():
        # Model building/compiling need to be within `strategy.scope()`.
        multi_worker_model = build_and_compile_cnn_model()

    history = tfdist.fit(multi_worker_model, multi_worker_dataset, epochs=3, steps_per_epoch=70)
    index = tf_config["task"]["index"]
    with open(os.path.join(out_dir, f"tutorial_worker_{index}.json"), "w") as f:
        json.dump({"history": {k: [float(v) for v in vs] for k, vs in history.history.items()}}, f)


if __name__ == "__main__":
    main()
