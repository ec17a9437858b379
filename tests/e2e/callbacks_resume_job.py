"""A user's script with stateful callbacks, killed once and restarted by the launcher.

Usage, under ``python -m launch [--max_restarts=N]``::

    python callbacks_resume_job.py OUT_DIR [KILL_AT]

Trains a digits MLP through ``tfdist.fit`` with EarlyStopping(patience=2,
restore_best_weights), ModelCheckpoint(save_best_only), ReduceLROnPlateau(patience=1) and
a CSVLogger, into ``OUT_DIR/model``. With ``KILL_AT`` (``EPOCH:BATCH``, 0-based), the last
worker (``parameter_server``: the chief, whose callbacks run there) kills itself with
SIGKILL at that batch in its first life only (``OUT_DIR/killed`` marks it). The chief
writes ``OUT_DIR/result.json``: its History, the epoch EarlyStopping stopped at, the
learning rate, and its predictions on held-out digits.
"""

import json
import os
import signal
import sys

OUT_DIR = sys.argv[1]
KILL_AT = tuple(int(part) for part in sys.argv[2].split(":")) if len(sys.argv) > 2 else None
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfdist  # noqa: E402
from tfdist.data.sources import load_digits_arrays  # noqa: E402

TASK = json.loads(os.environ["TF_CONFIG"])["task"]
CLUSTER = json.loads(os.environ["TF_CONFIG"])["cluster"]
IS_CHIEF = TASK["type"] == "chief" or ("chief" not in CLUSTER and TASK["index"] == 0)
KILLER = (
    TASK["type"] == "chief" if "chief" in CLUSTER else TASK["index"] == len(CLUSTER["worker"]) - 1
)


class KillOnce(keras.callbacks.Callback):
    """SIGKILL of this process at one batch, in its first life only."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        marker = os.path.join(OUT_DIR, "killed")
        if (self.epoch, batch) >= self.at and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)


def main():
    images, labels = load_digits_arrays()
    order = np.random.default_rng(0).permutation(len(labels))
    images, labels = images[order].reshape(-1, 64), labels[order]
    x, y = images[:1200], labels[:1200]
    validation = (images[1200:1500], labels[1200:1500])
    test = images[1500:]
    dist = tfdist.make_strategy()
    keras.utils.set_random_seed(7)
    with dist.scope():
        model = keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Dense(32, activation="relu"),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(0.03),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    callbacks = [
        keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True),
        keras.callbacks.ModelCheckpoint(
            os.path.join(OUT_DIR, "best.weights.h5"), save_best_only=True, save_weights_only=True
        ),
        keras.callbacks.ReduceLROnPlateau(patience=1, factor=0.5),
        keras.callbacks.CSVLogger(os.path.join(OUT_DIR, "epochs.csv")),
    ]
    if KILL_AT and KILLER:
        callbacks.append(KillOnce(*KILL_AT))
    history = tfdist.fit(
        model,
        x,
        y,
        batch_size=40,
        epochs=30,
        shuffle=False,
        validation_data=validation,
        callbacks=callbacks,
        model_dir=os.path.join(OUT_DIR, "model"),
        verbose=0,
    )
    predictions = tfdist.predict(model, test, verbose=0)  # Every worker: it is collective.
    if IS_CHIEF:
        result = {
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
            "stopped_epoch": int(callbacks[0].stopped_epoch),
            "learning_rate": float(model.optimizer.learning_rate.numpy()),
            "restored_from": history.restored_from,
            "predictions": predictions.tolist(),
        }
        with open(os.path.join(OUT_DIR, "result.json"), "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
