"""A user's script that trains through `tfdist.fit(..., sync_every=8)` on the chief of a
parameter_server launch (`python -m launch --strategy=parameter_server ... -- python
ps_local_steps_fit_job.py OUT_DIR`); writes `OUT_DIR/result.json` with the run's step,
the ps updates counted, the validation accuracy, and the weights' sum at each epoch's end
(a LearningRateScheduler sets the rate to 0 for the last epoch)."""

import json
import os
import sys

import keras
import numpy as np

import tfdist
from tfdist.data.sources import load_digits_arrays

OUT_DIR = sys.argv[1]


class WeightSums(keras.callbacks.Callback):
    """The sum of the weights' absolute values at each epoch's end."""

    def __init__(self):
        super().__init__()
        self.sums = []

    def on_epoch_end(self, epoch, logs=None):
        self.sums.append(float(sum(np.abs(w).sum() for w in self.model.get_weights())))


def main():
    images, labels = load_digits_arrays()
    x, y = images.reshape(-1, 64)[:1500], labels[:1500]
    validation = (images.reshape(-1, 64)[1500:], labels[1500:])
    dist = tfdist.make_strategy()
    keras.utils.set_random_seed(1)
    with dist.scope():
        model = keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Dense(64, activation="relu"),
                keras.layers.Dropout(0.1),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(3e-3),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=16,
        )
    history = tfdist.fit(
        model,
        x,
        y,
        batch_size=50,
        epochs=8,
        validation_data=validation,
        sync_every=8,
        verbose=0,
        callbacks=[
            keras.callbacks.LearningRateScheduler(lambda epoch, rate: 0.0 if epoch == 7 else rate),
            sums := WeightSums(),
        ],
    )
    result = {
        "final_step": history.final_step,
        "ps_updates": history.ps_updates,
        "val_accuracy": history.history["val_accuracy"][-1],
        "weight_sums": sums.sums,
    }
    with open(os.path.join(OUT_DIR, "result.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
