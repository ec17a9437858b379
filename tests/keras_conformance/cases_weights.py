"""Cases: the weights after N SGD steps equal Keras' on one device (synchronous strategies).

With `shuffle=False`, a seeded model and plain SGD, a synchronous strategy computes each
update from the same global batch as Keras' one-device `fit` (batch `k` is examples
`k*B .. k*B+B-1`, the partial last batch included) and averages the loss over that
whole batch, so the weights agree to float32 rounding (1e-5). Under `parameter_server`
the updates are asynchronous, so these cases are not run there; its other cases compare
losses loosely instead.
"""

import keras
import numpy as np
from conformance import case, history_of
from tiny import classifier, features, labels, regressor, targets, validation_pair

_ASYNC = "asynchronous updates: the weights are not those of one device, by design"


def _weights_after(front, model, x, y, **kwargs):
    history = front.fit(model, x, y, shuffle=False, verbose=0, **kwargs)
    return {
        **history_of(history),
        "weights": [w.tolist() for w in model.get_weights()],
        "weights_iterations": int(model.optimizer.iterations.numpy()),
    }


@case("strategies", parameter_server="excluded", note=_ASYNC)
def sgd_weights_with_a_partial_last_batch(front):
    """10 examples at batch 4 (4, 4, 2: even on 2 replicas), 3 epochs: 9 updates."""
    model = regressor(front, hidden=3)
    return _weights_after(front, model, features(10), targets(10), batch_size=4, epochs=3)


@case("strategies", parameter_server="excluded", note=_ASYNC)
def sgd_weights_with_an_odd_last_batch(front):
    """11 examples at batch 4: the last batch holds 3, which 2 replicas cannot split
    evenly; the update is still the mean over those 3, as on one device."""
    model = regressor(front, hidden=3)
    return _weights_after(front, model, features(11), targets(11), batch_size=4, epochs=2)


@case("strategies", parameter_server="excluded", note=_ASYNC)
def sgd_momentum_weights_of_a_classifier(front):
    """SGD with momentum, sparse cross-entropy and accuracy: 24 examples at batch 6."""
    model = classifier(front, optimizer=lambda: keras.optimizers.SGD(0.2, momentum=0.9))
    return _weights_after(front, model, features(24), labels(24), batch_size=6, epochs=2)


@case("strategies", parameter_server="excluded", note=_ASYNC)
def adam_weights_with_validation(front):
    """Adam (slots and bias correction) with a validation pass each epoch."""
    model = regressor(
        front, hidden=3, optimizer=lambda: keras.optimizers.Adam(0.05), metrics=["mae"]
    )
    return _weights_after(
        front,
        model,
        features(12),
        targets(12),
        batch_size=4,
        epochs=2,
        validation_data=validation_pair(),
    )


@case("strategies", parameter_server="excluded", note=_ASYNC)
def adam_weights_of_an_embedding_with_repeated_ids(front):
    """An Embedding under Adam, ids repeated within and across the replicas' rows: its
    gradient reaches the optimizer as rows (IndexedSlices), one per lookup, as in Keras'
    own step. Keras' Adam squares each row before adding repeats up, so a gradient made
    dense first moves the weights elsewhere (by up to 2x here)."""
    ids = (np.arange(24).reshape(12, 2) * 5) % 7
    with front.scope():
        model = keras.Sequential(
            [
                keras.Input((2,), dtype="int32"),
                keras.layers.Embedding(7, 3, name="embedding"),
                keras.layers.Flatten(),
                keras.layers.Dense(3, activation="softmax", name="out"),
            ],
            name="embedder",
        )
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    return _weights_after(front, model, ids, labels(12), batch_size=4, epochs=2)
