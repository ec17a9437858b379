"""Cases: what `compile()` sets takes effect, a second compile included.

A second `compile()` (another optimizer, loss and metrics) governs the next `fit` and
`evaluate`; a layer set `trainable=False` before recompiling stays frozen;
`steps_per_execution` changes the hooks, not the math; `jit_compile=True` trains on
the CPU to the same weights.
"""

import keras
from conformance import case, fit_observed, history_of, weights_of
from tiny import features, regressor, targets, validation_pair

X, Y = features(12), targets(12)  # 3 full batches of 4: partial batches are cases_steps'.


@case("compile")
def second_compile_takes_effect(front):
    """SGD + mse + mae, fit; then Adam + mae loss + mse metric, fit and evaluate."""
    model = regressor(front, hidden=3, metrics=["mae"])
    first = front.fit(model, X, Y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    with front.scope():
        model.compile(
            optimizer=keras.optimizers.Adam(0.05),
            loss="mae",
            metrics=[keras.metrics.MeanSquaredError(name="squared")],
        )
    second = front.fit(model, X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    result = front.evaluate(model, X, Y, batch_size=4, verbose=0, return_dict=True)
    return {
        "first": history_of(first),
        "second": history_of(second),
        "evaluate": result,
        "weights": weights_of(model),
        "optimizer": type(model.optimizer).__name__,
    }


@case("compile")
def second_compile_changes_evaluate_alone(front):
    """A recompile with other metrics, then evaluate with no fit in between."""
    model = regressor(front, metrics=["mae"])
    before = front.evaluate(model, X, Y, batch_size=4, verbose=0, return_dict=True)
    with front.scope():
        model.compile(optimizer="sgd", loss="mae", metrics=["mse"])
    after = front.evaluate(model, X, Y, batch_size=4, verbose=0, return_dict=True)
    return {"before": before, "after": after}


@case("compile")
def frozen_layer_stays_frozen_after_recompile(front):
    """fit, set the hidden layer trainable=False, recompile, fit: it no longer moves."""
    model = regressor(front, hidden=3)
    front.fit(model, X, Y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    hidden = model.get_layer("hidden")
    frozen = [w.tolist() for w in hidden.get_weights()]
    hidden.trainable = False
    with front.scope():
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    history = front.fit(model, X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    return {
        **history_of(history),
        "hidden_unchanged": [w.tolist() for w in hidden.get_weights()] == frozen,
        "trainable_weights": len(model.trainable_weights),
        "weights": weights_of(model),
    }


@case("compile")
def steps_per_execution_trains_as_one_step_at_a_time(front):
    """steps_per_execution=3 over 5 batches: executions of 3 and 2; the same weights."""
    model = regressor(front, hidden=3, steps_per_execution=3)
    validation = validation_pair()
    x, y = features(10), targets(10)
    return fit_observed(front, model, x, y, batch_size=2, epochs=2, validation_data=validation)


@case("compile")
def jit_compile_trains_on_the_cpu(front):
    """compile(jit_compile=True) trains on the CPU to Keras' weights and predictions."""
    model = regressor(front, hidden=3, jit_compile=True, metrics=["mae"])
    history = front.fit(model, X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    return {
        **history_of(history),
        "weights": weights_of(model),
        "predictions": front.predict(model, X, batch_size=4, verbose=0),
    }
