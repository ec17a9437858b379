"""``tfdist.fit`` on the reference job, written as a Keras user writes it; for compare_peers.

    python benchmarks/keras_fit_job.py OUT.json [--steps_per_loop N]
    python -m launch --strategy=multi_worker --num_workers=2 -- \
        python benchmarks/keras_fit_job.py OUT.json

MLP 784-256-10 (logits), Adam 1e-3, global batch 256, the 60,000 synthetic examples of
../shared/peers/peer_bench.py (uniform features, label = argmax(x·W)) as NumPy arrays,
3 epochs. The strategy is ``auto`` from TF_CONFIG (``one_device`` without one). The
chief writes ``{"examples_per_sec": ...}``: the trainer's own measure (training seconds
of epochs 2..3, as ``python -m tfdist.train`` reports), and Keras-callback wall time.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfdist  # noqa: E402

EXAMPLES, BATCH, EPOCHS = 60000, 256, 3


def data():
    rng = np.random.default_rng(0)
    x = rng.random((EXAMPLES, 784), dtype=np.float32)
    w = rng.standard_normal((784, 10)).astype(np.float32)
    return x, np.argmax(x @ w, axis=1).astype(np.int32)


class EpochTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.times.append(time.perf_counter())

    def on_train_end(self, logs=None):
        self.times.append(time.perf_counter())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--steps_per_loop", type=int, default=234)
    args = parser.parse_args()
    dist = tfdist.make_strategy("auto" if os.environ.get("TF_CONFIG") else "one_device")
    x, y = data()
    with dist.scope():
        model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(256, activation="relu"),
                                  keras.layers.Dense(10)])
        model.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    timer = EpochTimes()
    history = tfdist.fit(model, x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0,
                         steps_per_loop=args.steps_per_loop, callbacks=[timer])
    if dist.role.is_chief:
        wall = (EPOCHS - 1) * (EXAMPLES // BATCH) * BATCH / (timer.times[-1] - timer.times[1])
        with open(args.out, "w") as f:
            json.dump({"strategy": dist.kind,
                       "examples_per_sec": history.tfdist.examples_per_sec(),
                       "wall_examples_per_sec": wall,
                       "final_accuracy": history.history["accuracy"][-1]}, f)


if __name__ == "__main__":
    main()
