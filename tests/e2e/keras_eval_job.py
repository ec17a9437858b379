"""``tfdist.evaluate`` / ``tfdist.predict`` on 1,001 examples, global batch 64 (no divisor).

Usage: ``python keras_eval_job.py OUT_DIR`` under ``python -m launch`` (the strategy is
``auto`` from TF_CONFIG). A digits MLP trains five epochs with ``tfdist.fit``; then each
task writes ``OUT_DIR/<task type>_<index>.json`` with ``tfdist.evaluate``'s logs, the
loss and accuracy computed in NumPy from ``model(x)``, and the largest difference
between ``tfdist.predict`` and ``model(x)``.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import tfdist
from tfdist.data.sources import load_digits_arrays

EXAMPLES, BATCH = 1001, 64


def main():
    out_dir = sys.argv[1]
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    dist = tfdist.make_strategy("auto")
    images, labels = load_digits_arrays()
    x_train, y_train = images[EXAMPLES:], labels[EXAMPLES:]
    x, y = images[:EXAMPLES], labels[:EXAMPLES]
    keras.utils.set_random_seed(5)
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
            optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
    tfdist.fit(model, x_train, y_train, batch_size=BATCH, epochs=5, verbose=0)
    logs = tfdist.evaluate(model, x, y, batch_size=BATCH, return_dict=True)
    predicted = tfdist.predict(model, x, batch_size=BATCH)
    direct = np.asarray(model(x, training=False), np.float64)
    picked = np.clip(direct[np.arange(EXAMPLES), y], 1e-7, 1.0)
    result = {
        "evaluate": logs,
        "numpy": {
            "loss": float(-np.log(picked).mean()),
            "accuracy": float((direct.argmax(axis=1) == y).mean()),
        },
        "predict_shape": list(predicted.shape),
        "predict_max_difference": float(np.abs(predicted - direct).max()),
    }
    with open(os.path.join(out_dir, f"{task['type']}_{task['index']}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
