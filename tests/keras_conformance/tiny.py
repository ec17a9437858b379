"""Tiny data and models for the conformance cases: a few dozen examples, Dense layers.

Every case seeds itself through `conformance.observe`, so a model built here starts from
the same weights under every front door; the data is fixed by its own seeds.
"""

import keras
import numpy as np
from conformance import Front


def features(n: int, width: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, width)).astype("float32")


def targets(n: int, width: int = 2, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, width)).astype("float32")


def validation_pair(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """`(x, y)` for `validation_data=`: other examples than `features`/`targets`' own."""
    return features(n, seed=3), targets(n, seed=4)


def labels(n: int, classes: int = 3, seed: int = 2) -> np.ndarray:
    return (np.arange(n) * 7 + seed) % classes


def regressor(front: Front, *, width: int = 4, units: int = 2, hidden: int = 0, **compile_args):
    """Input(width) [→ Dense(hidden, tanh)] → Dense(units), SGD(0.1) and mse by default."""
    compile_args.setdefault("optimizer", "sgd_0.1")
    compile_args.setdefault("loss", "mse")
    with front.scope():
        layers = [keras.Input((width,))]
        if hidden:
            layers.append(keras.layers.Dense(hidden, activation="tanh", name="hidden"))
        layers.append(keras.layers.Dense(units, name="out"))
        model = keras.Sequential(layers, name="regressor")
        model.compile(**_optimizer(compile_args))
    return model


def classifier(front: Front, *, width: int = 4, classes: int = 3, **compile_args):
    """Input(width) → Dense(classes, softmax), sparse cross-entropy and accuracy by default."""
    compile_args.setdefault("optimizer", "sgd_0.1")
    compile_args.setdefault("loss", "sparse_categorical_crossentropy")
    compile_args.setdefault("metrics", ["accuracy"])
    with front.scope():
        model = keras.Sequential(
            [keras.Input((width,)), keras.layers.Dense(classes, activation="softmax", name="out")],
            name="classifier",
        )
        model.compile(**_optimizer(compile_args))
    return model


def _optimizer(compile_args: dict) -> dict:
    """Makes the optimizer and metrics inside the caller's scope, as tfdist requires.

    `optimizer="sgd_0.1"` means a fresh `SGD(0.1)`; a function as `optimizer` or
    `metrics` is called (`optimizer=lambda: keras.optimizers.Adam(0.05)`).
    """
    optimizer = compile_args.get("optimizer")
    if isinstance(optimizer, str) and optimizer.startswith("sgd_"):
        compile_args["optimizer"] = keras.optimizers.SGD(float(optimizer[4:]))
    elif callable(optimizer):
        compile_args["optimizer"] = optimizer()
    if callable(compile_args.get("metrics")):
        compile_args["metrics"] = compile_args["metrics"]()
    return compile_args
