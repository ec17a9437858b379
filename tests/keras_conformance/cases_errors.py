"""Cases: mistakes a user makes in their data, which Keras refuses.

Keras raises for each (its wording is its own and is not compared). tfdist must raise
one `tfdist.ConfigError` (a `ValueError`) whose message is one line and names the
thing that is wrong (one of the case's `words`), not a raw TensorFlow error from inside
a traced step, under every strategy.
"""

import keras
import numpy as np
from conformance import case, raised
from tiny import classifier, features, labels, regressor, targets

X = features(8)


def _fit(front, model, x, y):
    return raised(lambda: front.fit(model, x, y, batch_size=4, epochs=1, verbose=0))


@case("errors", words=("label",))
def error_label_out_of_range(front):
    """Sparse labels 0..3 for a 3-class output: label 3 is out of range."""
    return {"raised": _fit(front, classifier(front), X, np.arange(8) % 4)}


@case("errors", words=("one-hot", "sparse", "label", "shape"))
def error_one_hot_labels_with_a_sparse_loss(front):
    """One-hot (8, 3) targets with sparse_categorical_crossentropy."""
    y = keras.utils.to_categorical(labels(8), 3)
    return {"raised": _fit(front, classifier(front), X, y)}


@case("errors", words=("class", "shape"))
def error_one_hot_labels_with_the_wrong_number_of_classes(front):
    """4-class one-hot targets for a 3-class output (categorical cross-entropy)."""
    model = classifier(front, loss="categorical_crossentropy")
    return {"raised": _fit(front, model, X, keras.utils.to_categorical(np.arange(8) % 4, 4))}


@case("errors", words=("string", "str", "dtype"))
def error_string_labels(front):
    """String class names as targets (Keras refuses NumPy string arrays)."""
    y = np.array(["cat", "dog", "bird", "cat", "dog", "bird", "cat", "dog"])
    return {"raised": _fit(front, classifier(front), X, y)}


@case("errors", words=("shape", "input", "rank"))
def error_input_of_the_wrong_rank(front):
    """(8, 4, 3) inputs for a model of Input((4,)). (Keras squeezes a trailing axis of 1
    itself, so (8, 4, 1) would train.)"""
    wrong_rank = np.repeat(X[:, :, None], 3, axis=2)
    return {"raised": _fit(front, regressor(front), wrong_rank, targets(8))}


@case("errors", words=("shape", "input"))
def error_input_of_the_wrong_width(front):
    """(8, 5) inputs for a model of Input((4,))."""
    return {"raised": _fit(front, regressor(front), features(8, width=5), targets(8))}


@case("errors", words=("shape", "input"))
def error_predict_input_of_the_wrong_width(front):
    """predict on (8, 5) inputs for a model of Input((4,))."""
    model = regressor(front)
    return {
        "raised": raised(
            lambda: front.predict(model, features(8, width=5), batch_size=4, verbose=0)
        )
    }


@case("errors", words=("shape", "input", "target"))
def error_evaluate_targets_of_the_wrong_width(front):
    """(8, 3) targets for a 2-unit regression output."""
    model = regressor(front)
    return {
        "raised": raised(
            lambda: front.evaluate(model, X, targets(8, width=3), batch_size=4, verbose=0)
        )
    }
