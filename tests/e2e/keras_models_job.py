"""Keras' own example models, trained one after another; writes a JSON of what each reached.

Usage: ``python keras_models_job.py OUT_DIR MODE [MODEL ...]``

MODE ``keras`` is the reference: plain ``model.fit``/``model.evaluate`` on one device,
no strategy. Any other MODE (``one_device``, ``mirrored``, ``auto``) builds
``dist = tfdist.make_strategy(MODE)``, builds and compiles each model inside
``dist.scope()`` and trains it with ``tfdist.fit`` / ``tfdist.evaluate``; ``auto``
reads TF_CONFIG, so the same script runs under ``python -m launch`` as
``multi_worker`` (every worker) or ``parameter_server`` (the chief only).

Each task writes ``OUT_DIR/<kind>_<task type>_<task index>.json``:
``{model: {"history": {...}, "test": {...}}}`` (or ``{"error": "..."}`` where tfdist
refuses the model with a ConfigError). The models are written as Keras' examples
write them, on the 8×8 digits the project ships (and text made from their labels).
"""

import json
import math
import os
import sys

if len(sys.argv) < 3:
    sys.exit(__doc__)
OUT_DIR, MODE = sys.argv[1], sys.argv[2]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfdist  # noqa: E402
from tfdist.data.sources import load_digits_arrays  # noqa: E402

SEED = 1234
BATCH = 32
NUM_TEST = 297
VALIDATION_SPLIT = 0.1
WORDS = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
FILLERS = np.array(["the", "a", "digit", "looks", "like", "maybe", "written", "by", "hand"])


def digits():
    """(train, test): images (N, 8, 8) in [0, 1], labels; shuffled once, fixed."""
    images, labels = load_digits_arrays()
    order = np.random.default_rng(0).permutation(len(labels))
    images, labels = images[order], labels[order]
    return (images[NUM_TEST:], labels[NUM_TEST:]), (images[:NUM_TEST], labels[:NUM_TEST])


def digit_texts(labels):
    """A sentence per label: its word among filler words, in a label-dependent order."""
    rng = np.random.default_rng(7)
    texts = []
    for label in labels:
        words = list(rng.choice(FILLERS, size=5)) + [WORDS[label]]
        rng.shuffle(words)
        texts.append(" ".join(words))
    return np.array(texts)[:, None]


# Each builder returns (model compiled, x, y, x_test, y_test, epochs); called in scope.
def mlp(train, test):
    """The MNIST MLP: softmax output, one-hot labels, categorical_crossentropy."""
    model = keras.Sequential(
        [
            keras.Input(shape=(8, 8)),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return (
        model,
        train[0],
        keras.utils.to_categorical(train[1], 10),
        test[0],
        keras.utils.to_categorical(test[1], 10),
        12,
    )


def convnet(train, test):
    """The MNIST convnet: Conv2D / MaxPooling2D / Dropout, one-hot labels."""
    model = keras.Sequential(
        [
            keras.Input(shape=(8, 8, 1)),
            keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.25),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return (
        model,
        train[0][..., None],
        keras.utils.to_categorical(train[1], 10),
        test[0][..., None],
        keras.utils.to_categorical(test[1], 10),
        15,
    )


def batchnorm(train, test):
    """Dense → BatchNormalization → ReLU, sparse labels."""
    model = keras.Sequential(
        [
            keras.Input(shape=(64,)),
            keras.layers.Dense(64, use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return (model, train[0].reshape(-1, 64), train[1], test[0].reshape(-1, 64), test[1], 8)


def text(train, test):
    """A TextVectorization layer (adapted first) → Embedding → pooling → softmax."""
    x, x_test = digit_texts(train[1]), digit_texts(test[1])
    vectorize = keras.layers.TextVectorization(max_tokens=40, output_sequence_length=6)
    vectorize.adapt(x[:, 0])
    inputs = keras.Input(shape=(1,), dtype="string")
    hidden = vectorize(inputs)
    hidden = keras.layers.Embedding(40, 16)(hidden)
    hidden = keras.layers.GlobalAveragePooling1D()(hidden)
    outputs = keras.layers.Dense(10, activation="softmax")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model, x, train[1], x_test, test[1], 10


def two_outputs(train, test):
    """A functional model with two named outputs, a loss dict and loss_weights."""
    inputs = keras.Input(shape=(8, 8), name="image")
    hidden = keras.layers.Dense(64, activation="relu")(keras.layers.Flatten()(inputs))
    digit = keras.layers.Dense(10, activation="softmax", name="digit")(hidden)
    parity = keras.layers.Dense(1, activation="sigmoid", name="parity")(hidden)
    model = keras.Model(inputs, {"digit": digit, "parity": parity})
    model.compile(
        optimizer="adam",
        loss={"digit": "sparse_categorical_crossentropy", "parity": "binary_crossentropy"},
        loss_weights={"digit": 1.0, "parity": 0.5},
        metrics={"digit": ["accuracy"], "parity": ["accuracy"]},
    )

    def targets(labels):
        return {"digit": labels, "parity": (labels % 2).astype(np.float32)[:, None]}

    return model, train[0], targets(train[1]), test[0], targets(test[1]), 12


def regression(train, test):
    """Float targets (a linear score of the pixels plus unit noise), mse loss, mae metric.

    The noise sets a floor of 1.0 on the mse, so converged runs end near each other. The
    learning rate decays (a Keras schedule through the front door): at a constant 3e-3 the
    parameter_server run, whose stale steps act larger, ended an epoch 10% above that
    floor (docs/performance.md, sync vs async).
    """
    model = keras.Sequential(
        [
            keras.Input(shape=(64,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    steps = 20 * math.ceil(len(train[0]) * (1 - VALIDATION_SPLIT) / BATCH)
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, decay_steps=steps, alpha=0.1)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse", metrics=["mae"])
    weights = np.random.default_rng(3).normal(size=64).astype(np.float32)

    def targets(images, seed):
        score = (images.reshape(-1, 64) - 0.3) @ weights
        noise = np.random.default_rng(seed).normal(size=len(score)).astype(np.float32)
        return (2.0 * score / score.std() + noise)[:, None].astype(np.float32)

    return (
        model,
        train[0].reshape(-1, 64),
        targets(train[0], 4),
        test[0].reshape(-1, 64),
        targets(test[0], 5),
        20,
    )


class OwnTrainStep(keras.Model):
    """A subclassed model with its own train_step, as Keras' "customizing fit" guide writes it."""

    def __init__(self):
        super().__init__()
        self.flatten = keras.layers.Flatten()
        self.hidden = keras.layers.Dense(64, activation="relu")
        self.out = keras.layers.Dense(10, activation="softmax")

    def call(self, inputs):
        return self.out(self.hidden(self.flatten(inputs)))

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return {metric.name: metric.result() for metric in self.metrics}


def subclassed(train, test):
    model = OwnTrainStep()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, train[0], train[1], test[0], test[1], 12


MODELS = {
    "mlp": mlp,
    "convnet": convnet,
    "batchnorm": batchnorm,
    "text": text,
    "two_outputs": two_outputs,
    "regression": regression,
    "subclassed": subclassed,
}


def rounded(logs):
    return {
        key: [float(v) for v in values] if isinstance(values, list) else float(values)
        for key, values in logs.items()
    }


def run_keras(builder, train, test):
    model, x, y, x_test, y_test, epochs = builder(train, test)
    if x.dtype.kind == "U":  # Keras' own fit takes strings as tensors, not NumPy arrays.
        x, x_test = tf.constant(x), tf.constant(x_test)
    history = model.fit(
        x, y, batch_size=BATCH, epochs=epochs, validation_split=VALIDATION_SPLIT, verbose=0
    )
    return {
        "history": rounded(history.history),
        "test": rounded(
            model.evaluate(x_test, y_test, batch_size=BATCH, verbose=0, return_dict=True)
        ),
    }


def run_tfdist(dist, builder, train, test):
    with dist.scope():
        model, x, y, x_test, y_test, epochs = builder(train, test)
    try:
        history = tfdist.fit(
            model,
            x,
            y,
            batch_size=BATCH,
            epochs=epochs,
            validation_split=VALIDATION_SPLIT,
            verbose=0,
        )
    except tfdist.ConfigError as error:
        return {"error": str(error)}
    return {
        "history": rounded(history.history),
        "test": rounded(tfdist.evaluate(model, x_test, y_test, batch_size=BATCH, return_dict=True)),
    }


def main():
    names = sys.argv[3:] or list(MODELS)
    train, test = digits()
    if MODE == "keras":
        dist, name = None, "keras_chief_0"
    else:
        if MODE == "mirrored":
            tfdist.configure_cpu_devices(2)
        dist = tfdist.make_strategy(MODE)
        name = f"{dist.kind}_{dist.role.type}_{dist.role.index}"
    results = {}
    for model_name in names:
        keras.utils.set_random_seed(SEED)
        builder = MODELS[model_name]
        results[model_name] = (
            run_keras(builder, train, test)
            if dist is None
            else run_tfdist(dist, builder, train, test)
        )
        print(
            name,
            model_name,
            json.dumps(results[model_name].get("test", results[model_name])),
            flush=True,
        )
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, f"{name}.json"), "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
