"""The `Model.fit` part of TensorFlow's "Parameter server training" tutorial, in Keras 3.

As the tutorial writes it (its cluster from TF_CONFIG, TensorFlow's own
`ParameterServerStrategy` with a `MinSizePartitioner`, random data, `steps_per_execution`,
and TensorBoard, ModelCheckpoint and BackupAndRestore callbacks), with what Keras 3 changed:
Keras 3 has no `DatasetCreator`, so the script builds the dataset itself (the tutorial's
`dataset_fn` body with one input pipeline); `optimizers.legacy.SGD` is `optimizers.SGD`;
ModelCheckpoint's path ends in `.keras`; the target has one column for the one output
(Keras 3 does not broadcast the tutorial's (batch,) target against a Dense(10) output);
the model starts with an `Input` (Keras 3's BackupAndRestore needs a built model).
And `model.fit(...)` → `fit(model, ...)`, which is `tfdist.fit` under tfdist.
"""

import os

import numpy as np
import tensorflow as tf

NUM_PS = 1


def make_strategy():
    """The tutorial's strategy: from TF_CONFIG, variables split across the ps tasks."""
    cluster_resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    variable_partitioner = tf.distribute.experimental.partitioners.MinSizePartitioner(
        min_shard_bytes=(256 << 10), max_shards=NUM_PS
    )
    return tf.distribute.ParameterServerStrategy(
        cluster_resolver, variable_partitioner=variable_partitioner
    )


def dataset(global_batch_size=64):
    rng = np.random.default_rng(0)  # The tutorial's tf.random.uniform, fixed.
    x = rng.uniform(size=(10, 10)).astype(np.float32)
    y = rng.uniform(size=(10, 1)).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(10).repeat()
    return data.batch(global_batch_size).prefetch(2)


def run(strategy, fit, working_dir):
    """Builds, compiles and fits as the tutorial does; returns the History's dict."""
    with strategy.scope():
        model = tf.keras.models.Sequential([tf.keras.Input(shape=(10,)), tf.keras.layers.Dense(1)])
    model.compile(tf.keras.optimizers.SGD(), loss="mse", steps_per_execution=10)

    log_dir = os.path.join(working_dir, "log")
    ckpt_filepath = os.path.join(working_dir, "ckpt.keras")
    backup_dir = os.path.join(working_dir, "backup")
    callbacks = [
        tf.keras.callbacks.TensorBoard(log_dir=log_dir),
        tf.keras.callbacks.ModelCheckpoint(filepath=ckpt_filepath),
        tf.keras.callbacks.BackupAndRestore(backup_dir=backup_dir),
    ]
    history = fit(model, dataset(), epochs=5, steps_per_epoch=20, callbacks=callbacks)
    return {
        "history": history.history,
        "checkpoint_written": os.path.exists(ckpt_filepath),
        "tensorboard_files": sum(len(files) for _, _, files in os.walk(log_dir)),
        "backup_left": os.path.exists(backup_dir) and bool(os.listdir(backup_dir)),
    }
