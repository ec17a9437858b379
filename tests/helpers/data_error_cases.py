"""The user's data mistakes of issue 23, each with the one line tfdist gives for it.

Shared by the in-process tests (one_device, mirrored, and Keras' own fit as the oracle)
and the end-to-end ones (multi_worker, parameter_server): a case builds its model in a
strategy's scope (layers named, so messages do not depend on what was built before),
makes its data, and runs tfdist's call, or Keras' own `Model` method with `keras_call`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

ROWS, FEATURES, CLASSES = 64, 4, 3
BATCH = 16
# Rows a mistake is put in when only a step can see it: odd and even ones in both halves,
# so every worker's part holds some whatever the shard policy, and a parameter_server
# worker that runs any two steps of an epoch reads one.
SPREAD = [3, 12, 22, 29, 36, 47, 54, 61]


def features(rows: int = ROWS, width: int = FEATURES, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, width)).astype("float32")


def labels(rows: int = ROWS, classes: int = CLASSES, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, rows)


def build(
    distribution: Any,
    loss: Any = "sparse_categorical_crossentropy",
    *,
    activation: str | None = "softmax",
    hidden: bool = False,
) -> keras.Model:
    """Input 'features' (4) → [Dense 'hidden' (relu)] → Dense 'classes' (3), compiled."""
    keras.utils.set_random_seed(0)
    with distribution.scope():
        inputs = keras.Input((FEATURES,), name="features")
        h = keras.layers.Dense(8, activation="relu", name="hidden")(inputs) if hidden else inputs
        outputs = keras.layers.Dense(CLASSES, activation=activation, name="classes")(h)
        model = keras.Model(inputs, outputs, name="net")
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    return model


class Subclassed(keras.Model):
    """A subclassed model: it names no inputs or outputs, so only a step sees its classes."""

    def __init__(self) -> None:
        super().__init__(name="subclassed")
        self.classes = keras.layers.Dense(CLASSES, activation="softmax", name="classes")

    def call(self, x: Any) -> Any:
        return self.classes(x)


def build_subclassed(distribution: Any) -> keras.Model:
    keras.utils.set_random_seed(0)
    with distribution.scope():
        model = Subclassed()
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    return model


@dataclasses.dataclass(frozen=True)
class Case:
    """One mistake: the model, the call and its data, and tfdist's message for it.

    `data()` returns the call's arguments after the model (`x`, `y`, keywords); `message`
    is the whole line tfdist raises, or a prefix of it ending in "..." where the rest
    names a worker.
    """

    name: str
    call: str  # fit, evaluate or predict
    model: Callable[[Any], keras.Model]
    data: Callable[[], tuple[tuple, dict]]
    message: str
    runtime: bool = False  # Seen only while training (a dataset's later batches, NaN).


def _with_label(value: int, rows: Any = 5) -> np.ndarray:
    y = labels()
    y[rows] = value
    return y


def _nan_features() -> np.ndarray:
    x = features()
    x[SPREAD, 1] = np.nan
    return x


def _late_bad_label() -> tf.data.Dataset:
    """A bad label in the last batch only: the first batch, which the checks read, is fine."""
    return tf.data.Dataset.from_tensor_slices((features(), _with_label(3, rows=ROWS - 2))).batch(
        BATCH
    )


def _fit(**keywords: Any) -> dict:
    return {"batch_size": BATCH, "epochs": 1, "verbose": 0, **keywords}


OUT_OF_RANGE = (
    "labels of {what} hold 3, outside the 3 classes (0..2) the model's output 'classes' has; "
    "use labels 0..2 or a model with 4 outputs."
)

CASES = [
    Case(
        "label_out_of_range",
        "fit",
        build,
        lambda: ((features(), _with_label(3)), _fit()),
        OUT_OF_RANGE.format(what="y"),
    ),
    Case(
        "label_out_of_range_from_logits",
        "fit",
        lambda d: build(
            d, keras.losses.SparseCategoricalCrossentropy(from_logits=True), activation=None
        ),
        lambda: ((features(), _with_label(3)), _fit()),
        OUT_OF_RANGE.format(what="y"),
    ),
    Case(
        "negative_label",
        "fit",
        build,
        lambda: ((features(), _with_label(-1)), _fit()),
        "labels of y hold -1, outside the 3 classes (0..2) the model's output 'classes' has; "
        "use labels 0..2.",
    ),
    Case(
        "one_hot_labels_with_a_sparse_loss",
        "fit",
        build,
        lambda: ((features(), keras.utils.to_categorical(labels(), CLASSES)), _fit()),
        "labels of y are one-hot rows (shape (64, 3)) but the loss "
        "'sparse_categorical_crossentropy' of the model's output 'classes' takes one class "
        "index per example (0..2); turn them into class indices with argmax(axis=-1) or "
        "compile with loss='categorical_crossentropy'.",
    ),
    Case(
        "one_hot_of_four_classes_for_three_outputs",
        "fit",
        lambda d: build(d, "categorical_crossentropy"),
        lambda: ((features(), keras.utils.to_categorical(labels(classes=4), 4)), _fit()),
        "labels of y are one-hot rows of 4 classes (shape (64, 4)) but the model's output "
        "'classes' has 3; one-hot encode them with 3 classes or give the output 4 units "
        "(keras.layers.Dense(4)).",
    ),
    Case(
        "class_names_as_labels",
        "fit",
        build,
        lambda: ((features(), np.array(["cat", "dog", "bird", "cat"] * (ROWS // 4))), _fit()),
        "labels of y are strings (e.g. 'cat') but the loss 'sparse_categorical_crossentropy' "
        "of the model's output 'classes' needs numbers; map the 3 class names to 0..2 first, "
        "e.g. names, y = np.unique(y, return_inverse=True).",
    ),
    Case(
        "rank_3_inputs",
        "fit",
        build,
        lambda: ((features().reshape(ROWS, 2, 2), labels()), _fit()),
        "x has shape (64, 2, 2) (rank 3) but the model's input 'features' takes batches of "
        "shape (None, 4) (rank 2); give it examples of shape (4,) or build the model with "
        "keras.Input(shape=(2, 2)).",
    ),
    Case(
        "five_features_for_four",
        "fit",
        build,
        lambda: ((features(width=5), labels()), _fit()),
        "x has 5 features per example (shape (64, 5)) but the model's input 'features' takes "
        "4 (batches of shape (None, 4)); give it 4 columns or build the model with "
        "keras.Input(shape=(5,)).",
    ),
    Case(
        "five_features_in_predict",
        "predict",
        build,
        lambda: ((features(width=5),), {"batch_size": BATCH}),
        "x has 5 features per example (shape (64, 5)) but the model's input 'features' takes "
        "4 (batches of shape (None, 4)); give it 4 columns or build the model with "
        "keras.Input(shape=(5,)).",
    ),
    Case(
        "rank_3_inputs_in_predict",
        "predict",
        build,
        lambda: ((features().reshape(ROWS, 2, 2),), {"batch_size": BATCH}),
        "x has shape (64, 2, 2) (rank 3) but the model's input 'features' takes batches of "
        "shape (None, 4) (rank 2); give it examples of shape (4,) or build the model with "
        "keras.Input(shape=(2, 2)).",
    ),
    Case(
        "four_wide_targets_in_evaluate",
        "evaluate",
        lambda d: build(d, "mse", activation=None),
        lambda: ((features(), features(width=4, seed=2)), {"batch_size": BATCH}),
        "targets of y have shape (64, 4) but the model's output 'classes' gives (None, 3), "
        "and the loss 'mse' needs a shape that broadcasts to it; give targets of shape "
        "(None, 3) or an output that matches them.",
    ),
    Case(
        "nan_inputs_with_a_finite_loss",
        "fit",
        lambda d: build(d, hidden=True),
        lambda: ((_nan_features(), labels()), _fit(epochs=2, steps_per_loop=1)),
        "x holds NaN at row 3, column 1 (8 rows hold NaN/inf), and the model's weights became "
        "NaN/inf by step {n} "
        "(epoch {n}); replace or drop the non-finite values before training (e.g. "
        "np.nan_to_num), or give the model a layer that handles them.",
        runtime=True,
    ),
    Case(
        "label_out_of_range_for_a_subclassed_model",
        "fit",
        build_subclassed,
        lambda: ((features(), _with_label(3, rows=SPREAD)), _fit(steps_per_loop=1)),
        "labels of y hold 3, outside the 3 classes (0..2) of the model's output; use labels "
        "0..2 or a model with 4 outputs.",
        runtime=True,
    ),
    Case(
        "label_out_of_range_in_a_later_batch",
        "fit",
        build,
        lambda: ((_late_bad_label(),), {"epochs": 1, "verbose": 0}),
        OUT_OF_RANGE.format(what="dataset x"),
        runtime=True,
    ),
]
BY_NAME = {case.name: case for case in CASES}


def run(case: Case, distribution: Any) -> Any:
    """tfdist's call of `case` under `distribution`."""
    import tfdist

    args, keywords = case.data()
    return getattr(tfdist, case.call)(case.model(distribution), *args, **keywords)


def keras_call(case: Case) -> Any:
    """Keras' own `Model.fit`/`evaluate`/`predict` of `case` on one device (the oracle)."""
    args, keywords = case.data()
    keywords = {k: v for k, v in keywords.items() if k != "steps_per_loop"}
    keywords.setdefault("verbose", 0)
    model = case.model(tf.distribute.get_strategy())
    return model, getattr(model, case.call)(*args, **keywords)


def matches(case: Case, message: str) -> bool:
    """Whether `message` is `case`'s line (`{n}`: any number, e.g. the step it stopped at)."""
    pattern = re.escape(case.message).replace(re.escape("{n}"), r"\d+")
    return re.fullmatch(pattern, message) is not None
