"""The reference job's pieces that do not depend on a backend, for the fit jobs of compare_peers.

Owns the job as ../shared/peers/peer_bench.py defines it: 60,000 synthetic examples (uniform
features, label = argmax(x·W)) as NumPy arrays, the MLP 784-256-10 (logits), global batch
256, 3 epochs, and how a job measures examples/s (a Keras callback's wall time over epochs
2..3; epoch 1 compiles). Imports only NumPy and Keras, so that keras_fit_job.py (TensorFlow)
and keras_jax_job.py (JAX) share it; the backend is whatever the importing process set
before its first ``import keras``. Strategies, distributions and launching stay with the jobs.
"""

import time

import keras
import numpy as np

EXAMPLES, BATCH, EPOCHS = 60000, 256, 3
STEPS_PER_EPOCH = EXAMPLES // BATCH


def data():
    """The reference job's arrays: ``x`` float32 (60,000, 784), ``y`` int32 (60,000,)."""
    rng = np.random.default_rng(0)
    x = rng.random((EXAMPLES, 784), dtype=np.float32)
    w = rng.standard_normal((784, 10)).astype(np.float32)
    return x, np.argmax(x @ w, axis=1).astype(np.int32)


def network():
    """The reference job's MLP 784-256-10, uncompiled, returning logits."""
    return keras.Sequential(
        [keras.Input((784,)), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(10)]
    )


def compile_args():
    """``model.compile`` arguments of the reference job: Adam 1e-3, cross-entropy on logits."""
    return {
        "optimizer": keras.optimizers.Adam(1e-3),
        "loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "metrics": ["accuracy"],
    }


class EpochTimes(keras.callbacks.Callback):
    """Wall-clock time at each epoch's start and at the end of training."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.times.append(time.perf_counter())

    def on_train_end(self, logs=None):
        self.times.append(time.perf_counter())

    def examples_per_sec(self):
        """Global examples/s over epochs 2..EPOCHS: whole global batches, as the peers count."""
        return (EPOCHS - 1) * STEPS_PER_EPOCH * BATCH / (self.times[-1] - self.times[1])
