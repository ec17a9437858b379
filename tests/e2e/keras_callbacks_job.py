"""Standard Keras callbacks under ``tfdist.fit``: each task writes what it saw to its own JSON.

Usage: ``python keras_callbacks_job.py OUT_DIR [CASE ...]`` under ``python -m launch``
(``multi_worker``: every worker runs it; ``parameter_server``: the chief). The strategy
comes from TF_CONFIG (``tfdist.make_strategy("auto")``); the task from TF_CONFIG too.
Each case trains a fresh digits MLP with one kind of callback and records, per epoch,
what the callbacks and the model saw (learning rate, a checksum of the weights, ...);
``OUT_DIR/<task type>_<index>.json`` holds ``{case: record}``.
"""

import json
import os
import sys

if len(sys.argv) < 2:
    sys.exit(__doc__)
OUT_DIR = sys.argv[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfdist  # noqa: E402
from tfdist.data.sources import load_digits_arrays  # noqa: E402

BATCH = 32
EPOCHS = 5
STEPS_PER_LOOP = 8
TASK = json.loads(os.environ["TF_CONFIG"])["task"]
NAME = f"{TASK['type']}_{TASK['index']}"
IS_CHIEF = TASK["type"] == "chief" or (TASK["type"] == "worker" and TASK["index"] == 0)


def digits():
    images, labels = load_digits_arrays()
    order = np.random.default_rng(0).permutation(len(labels))
    return images[order][:1500], labels[order][:1500]


def build(dist, learning_rate=1e-3):
    keras.utils.set_random_seed(99)
    with dist.scope():
        model = keras.Sequential(
            [
                keras.Input(shape=(8, 8)),
                keras.layers.Flatten(),
                keras.layers.Dense(32, activation="relu"),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    return model


def checksum(model):
    return float(sum(np.abs(w).sum() for w in model.get_weights()))


class Watcher(keras.callbacks.Callback):
    """Records, per epoch, the learning rate at its start and the weights at its end."""

    def __init__(self):
        super().__init__()
        self.rates, self.sums = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.rates.append(float(np.asarray(self.model.optimizer.learning_rate)))

    def on_epoch_end(self, epoch, logs=None):
        self.sums.append(checksum(self.model))


def fit(dist, model, callbacks, x=None, y=None, epochs=EPOCHS):
    if x is None:
        x, y = digits()
    watcher = Watcher()
    history = tfdist.fit(
        model,
        x,
        y,
        batch_size=BATCH,
        epochs=epochs,
        validation_split=0.1,
        steps_per_loop=STEPS_PER_LOOP,
        callbacks=[*callbacks, watcher],
        verbose=0,
    )
    return {
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        "rates": watcher.rates,
        "sums": watcher.sums,
        "final_sum": checksum(model),
    }


def early_stopping(dist):
    # val_accuracy never improves by 0.5: the first epoch is the best, the third stops.
    stop = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", min_delta=0.5, patience=2, restore_best_weights=True
    )
    record = fit(dist, build(dist), [stop], epochs=10)
    record["stopped_epoch"] = stop.stopped_epoch
    return record


def reduce_lr(dist):
    # loss never improves by 10: the rate halves after every epoch but the first.
    reduce = keras.callbacks.ReduceLROnPlateau(
        monitor="loss", factor=0.5, patience=1, min_delta=10.0, min_lr=1e-5
    )
    return fit(dist, build(dist), [reduce])


def scheduler(dist):
    # Epochs 0-1 at 1e-3, then 0: from the third epoch on the weights must not move.
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch, rate: 1e-3 if epoch < 2 else 0.0)
    return fit(dist, build(dist), [schedule])


def checkpoint(dist):
    path = os.path.join(OUT_DIR, "checkpoint.keras")
    save = keras.callbacks.ModelCheckpoint(path, monitor="val_loss")
    record = fit(dist, build(dist), [save], epochs=2)
    record["filepath"] = str(save.filepath)
    return record


def csv_logger(dist):
    logger = keras.callbacks.CSVLogger(os.path.join(OUT_DIR, "training.csv"))
    record = fit(dist, build(dist), [logger], epochs=3)
    record["opened"] = logger.csv_file is not None
    return record


def terminate_on_nan(dist):
    x, y = digits()
    targets = y.astype(np.float32)
    targets[::50] = np.nan  # A NaN target in every loop's batches: the mse loss is NaN.
    keras.utils.set_random_seed(99)
    with dist.scope():
        model = keras.Sequential(
            [keras.Input(shape=(8, 8)), keras.layers.Flatten(), keras.layers.Dense(1)]
        )
        model.compile(optimizer="adam", loss="mse")
    record = fit(dist, model, [keras.callbacks.TerminateOnNaN()], x=x, y=targets)
    record["stop_training"] = bool(model.stop_training)
    return record


def lambda_callback(dist):
    seen = {"train_begin": 0, "train_end": 0, "epochs": [], "keys": []}
    hooks = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: seen.__setitem__("train_begin", seen["train_begin"] + 1),
        on_epoch_end=lambda epoch, logs: (
            seen["epochs"].append(epoch),
            seen["keys"].append(sorted(logs)),
        ),
        on_train_end=lambda logs: seen.__setitem__("train_end", seen["train_end"] + 1),
    )
    record = fit(dist, build(dist), [hooks], epochs=3)
    record["seen"] = seen
    return record


class Recorder(keras.callbacks.Callback):
    """A user's callback: the hooks called, in order, with their batch or epoch index."""

    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append(["train_begin", None, sorted(logs or {})])

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(["epoch_begin", epoch, []])

    def on_train_batch_begin(self, batch, logs=None):
        self.events.append(["batch_begin", batch, []])

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(["batch_end", batch, sorted(logs or {})])

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(["epoch_end", epoch, sorted(logs or {})])

    def on_train_end(self, logs=None):
        self.events.append(["train_end", None, []])


def user_callback(dist):
    recorder = Recorder()
    record = fit(dist, build(dist), [recorder], epochs=2)
    record["events"] = recorder.events
    record["model_is_set"] = recorder.model is not None
    return record


CASES = {
    "early_stopping": early_stopping,
    "reduce_lr": reduce_lr,
    "scheduler": scheduler,
    "checkpoint": checkpoint,
    "csv_logger": csv_logger,
    "terminate_on_nan": terminate_on_nan,
    "lambda_callback": lambda_callback,
    "user_callback": user_callback,
}


def main():
    dist = tfdist.make_strategy("auto")
    results = {"kind": dist.kind, "is_chief": dist.role.is_chief}
    for case in sys.argv[2:] or list(CASES):
        results[case] = CASES[case](dist)
        print(NAME, case, "done", flush=True)
    with open(os.path.join(OUT_DIR, f"{NAME}.json"), "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
