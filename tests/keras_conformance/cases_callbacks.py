"""Cases: the hooks Keras calls, in order, with their indices and logs, and the History.

Keras' `fit` calls `on_train_begin`; per epoch `on_epoch_begin`, then per execution of
`steps_per_execution` steps `on_train_batch_begin(first step)` and
`on_train_batch_end(last step, running logs)`; then, when validating, `on_test_begin`,
the test batch hooks and `on_test_end(val logs)` on the same callbacks; then
`on_epoch_end(epoch, logs with val_*)`; at last `on_train_end`. `evaluate(callbacks=)`
calls the `on_test_*` hooks and `predict(callbacks=)` the `on_predict_*` ones.
"""

import keras
from conformance import Recorder, case, evaluate_observed, fit_observed, history_of
from tiny import classifier, features, labels, regressor, targets, validation_pair


@case("callbacks")
def fit_hooks_with_validation(front):
    """12 examples at batch 4 (3 steps), 6 validation examples (2 steps, the last partial)."""
    model = regressor(front, metrics=["mae"])
    return fit_observed(
        front,
        model,
        features(12),
        targets(12),
        batch_size=4,
        epochs=2,
        validation_data=validation_pair(),
    )


@case("callbacks")
def fit_hooks_classifier_metrics(front):
    """Loss and accuracy in every hook's logs; val_ keys at epoch end only."""
    model = classifier(front)
    return fit_observed(
        front,
        model,
        features(12),
        labels(12),
        batch_size=4,
        epochs=2,
        validation_data=(features(8, seed=3), labels(8, seed=1)),
    )


@case("callbacks")
def fit_hooks_steps_per_execution(front):
    """`steps_per_execution=2`: one batch-hook pair per execution, indexed by its steps."""
    model = regressor(front, steps_per_execution=2)
    return fit_observed(
        front,
        model,
        features(10),
        targets(10),
        batch_size=2,
        epochs=2,
        validation_data=validation_pair(),
    )


@case("callbacks")
def evaluate_hooks(front):
    """`evaluate(callbacks=)`: on_test_begin, a pair per batch (partial last), on_test_end."""
    model = regressor(front, metrics=["mae"])
    return evaluate_observed(front, model, features(10), targets(10), batch_size=4)


@case("callbacks")
def evaluate_hooks_steps_per_execution(front):
    """steps_per_execution=2 over 5 batches: test hook pairs (0, 1), (2, 3), (4, 5)."""
    model = regressor(front, metrics=["mae"], steps_per_execution=2)
    return evaluate_observed(
        front, model, features(10), targets(10), batch_size=2, return_dict=True
    )


@case("callbacks")
def predict_hooks(front):
    """`predict(callbacks=)`: on_predict_* with each batch's outputs in its end logs."""
    model = regressor(front)
    recorder = Recorder()
    predictions = front.predict(model, features(10), batch_size=4, callbacks=[recorder], verbose=0)
    return {"events": recorder.events, "predictions": predictions}


@case("callbacks")
def predict_hooks_steps_per_execution(front):
    """steps_per_execution=2 over 5 batches: predict hook pairs (0, 1), (2, 3), (4, 5)."""
    model = regressor(front, steps_per_execution=2)
    recorder = Recorder()
    predictions = front.predict(model, features(10), batch_size=2, callbacks=[recorder], verbose=0)
    return {"events": recorder.events, "predictions": predictions}


class _StopAtBatch(keras.callbacks.Callback):
    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.batch:
            self.model.stop_training = True


@case("callbacks")
def stop_training_from_a_batch_hook(front):
    """`model.stop_training = True` in a batch hook ends the epoch there; Keras still
    validates and calls on_epoch_end, then stops."""
    return fit_observed(
        front,
        regressor(front),
        features(12),
        targets(12),
        batch_size=2,
        epochs=3,
        validation_data=(features(4, seed=3), targets(4, seed=4)),
        callbacks=[_StopAtBatch(1)],
    )


@case("callbacks")
def history_is_returned_and_set_on_the_model(front):
    """fit returns a keras.callbacks.History, the same object as `model.history`."""
    model = classifier(front)
    history = front.fit(
        model, features(8), labels(8), batch_size=4, epochs=2, verbose=0, shuffle=False
    )
    return {
        "type": type(history).__name__,
        "is_model_history": history is model.history,
        "model_is_set": history.model is model,
        **history_of(history),
    }
