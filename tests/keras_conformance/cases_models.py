"""Cases: models beyond a compiled Sequential.

A subclassed model with its own `train_step` and no `call()` (keras-io's VAE pattern);
`train_step`/`test_step`/`predict_step` receiving the batch as Keras passes it (`x`
alone, not `(x,)`, when there are no targets); logs returned by a custom step reaching
callbacks and History; a vector-valued metric (`F1Score(average=None)`); `None` losses
for some outputs of a multi-output model given one target; a sample weight per output.

Under `parameter_server`, tfdist refuses a model's own `train_step`/`test_step` in one
line (its step runs on the workers; docs/trainer.md): that is asserted there instead.
"""

import keras
import numpy as np
import tensorflow as tf
from conformance import case, fit_observed, history_of, weights_of
from tiny import classifier, features, labels, targets, validation_pair

_OWN_STEP = (
    "a model's own train_step/test_step is refused under parameter_server "
    "(docs/trainer.md: tfdist's step runs on the workers)"
)
_STEP_WORDS = ("train_step", "test_step")


class _Sampler(keras.layers.Layer):
    """A deterministic stand-in for the VAE's sampling: z = mean + 0.1 * tanh(log_var)."""

    def call(self, inputs):
        mean, log_var = inputs
        return mean + 0.1 * tf.tanh(log_var)


class _AutoEncoder(keras.Model):
    """keras-io's VAE pattern: encoder and decoder, trackers, `train_step`, no `call()`.

    The loss is divided by the replicas in sync before the gradient, as Keras' own
    `compute_loss` does: under any tf.distribute strategy Keras sums the replicas'
    gradients, so this is what makes one update equal one device's.
    """

    def __init__(self):
        super().__init__(name="autoencoder")
        self.encode_mean = keras.layers.Dense(2, name="mean")
        self.encode_log_var = keras.layers.Dense(2, name="log_var")
        self.sampler = _Sampler(name="sampler")
        self.decoder = keras.layers.Dense(4, name="decoder")
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def _vae_losses(self, x):
        mean, log_var = self.encode_mean(x), self.encode_log_var(x)
        reconstruction = self.decoder(self.sampler([mean, log_var]))
        reconstruction_loss = tf.reduce_mean(tf.reduce_sum(tf.square(x - reconstruction), 1))
        kl = -0.5 * (1 + log_var - tf.square(mean) - tf.exp(log_var))
        kl_loss = tf.reduce_mean(tf.reduce_sum(kl, axis=1))
        return reconstruction_loss + kl_loss, reconstruction_loss, kl_loss

    def train_step(self, data):
        with tf.GradientTape() as tape:
            total, reconstruction, kl = self._vae_losses(data)
            replicas = tf.distribute.get_replica_context().num_replicas_in_sync
            scaled = total / replicas
        grads = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
        self.total_loss_tracker.update_state(total)
        self.reconstruction_loss_tracker.update_state(reconstruction)
        self.kl_loss_tracker.update_state(kl)
        return {metric.name: metric.result() for metric in self.metrics}


@case("models", parameter_server="refused", words=_STEP_WORDS, note=_OWN_STEP)
def own_train_step_without_call(front):
    """fit(x) with no targets on a model that has only train_step: 12 examples at
    batch 4, 2 epochs; the trackers' names are the History's keys."""
    with front.scope():
        model = _AutoEncoder()
        model.compile(optimizer=keras.optimizers.SGD(0.05))
    return fit_observed(front, model, features(12), batch_size=4, epochs=2)


def _describe(data) -> str:
    """The structure of a step's `data`: `Tensor(float32, rank 2)`, `tuple(...)`, ..."""
    if isinstance(data, (tuple, list)):
        return f"{type(data).__name__}({', '.join(_describe(item) for item in data)})"
    if isinstance(data, dict):
        return "dict(" + ", ".join(f"{k}={_describe(v)}" for k, v in sorted(data.items())) + ")"
    if data is None:
        return "None"
    return f"Tensor({data.dtype.name}, rank {len(data.shape)})"


class _Watched(keras.Model):
    """Dense(2) whose steps note the structure of the data Keras hands them (at tracing)."""

    def __init__(self):
        super().__init__(name="watched")
        self.out = keras.layers.Dense(2, name="out")
        self.seen = {"train_step": [], "test_step": [], "predict_step": []}

    def call(self, x):
        return self.out(x)

    def _note(self, step, data):
        description = _describe(data)
        if description not in self.seen[step]:
            self.seen[step].append(description)

    def train_step(self, data):
        self._note("train_step", data)
        return super().train_step(data)

    def test_step(self, data):
        self._note("test_step", data)
        return super().test_step(data)

    def predict_step(self, data):
        self._note("predict_step", data)
        return super().predict_step(data)


def _watched(front):
    with front.scope():
        model = _Watched()
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


@case("models", parameter_server="refused", words=_STEP_WORDS, note=_OWN_STEP)
def train_step_receives_the_data_as_keras_passes_it(front):
    """fit(x, y), then fit(x, y, sample_weight=): (x, y), then (x, y, sample_weight);
    with x alone (an autoencoder, targets from x by its own step) Keras passes x."""
    x, y = features(8, width=2), targets(8)
    model = _watched(front)
    front.fit(model, x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    weights = np.ones(8, "float32")
    front.fit(model, x, y, sample_weight=weights, batch_size=4, shuffle=False, verbose=0)
    return {"seen": model.seen, "weights": weights_of(model)}


class _OwnTargets(_Watched):
    """Computes its targets from `x` itself: fit(x) with no y."""

    def train_step(self, data):
        self._note("train_step", data)
        return super().train_step((data, data[:, :2]))

    def test_step(self, data):
        self._note("test_step", data)
        return super().test_step((data, data[:, :2]))


@case("models", parameter_server="refused", words=_STEP_WORDS, note=_OWN_STEP)
def steps_receive_x_not_a_tuple_without_targets(front):
    """fit(x), evaluate(x) and predict(x) with no targets: each step gets x itself."""
    x = features(8)
    with front.scope():
        model = _OwnTargets()
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    front.fit(model, x, batch_size=4, epochs=1, shuffle=False, verbose=0)
    result = front.evaluate(model, x, batch_size=4, verbose=0, return_dict=True)
    predictions = front.predict(model, x, batch_size=4, verbose=0)
    return {"seen": model.seen, "result": result, "predictions": predictions}


@case("models")
def predict_step_receives_x(front):
    """predict(x) on a model with its own predict_step: the step gets x, not (x,)."""
    model = _watched(front)
    predictions = front.predict(model, features(8, width=2), batch_size=4, verbose=0)
    return {"seen": model.seen["predict_step"], "predictions": predictions}


class _ExtraLogs(keras.Model):
    """A model whose own steps return logs beyond the loss: `doubled` and `batch_rows`."""

    def __init__(self):
        super().__init__(name="extra_logs")
        self.out = keras.layers.Dense(2, name="out")

    def call(self, x):
        return self.out(x)

    def _extra(self, logs, x):
        logs = dict(logs)
        logs["doubled"] = 2.0 * logs["loss"]
        logs["batch_rows"] = tf.cast(tf.shape(x)[0], tf.float32)
        return logs

    def train_step(self, data):
        return self._extra(super().train_step(data), data[0])

    def test_step(self, data):
        return self._extra(super().test_step(data), data[0])


@case("models", parameter_server="refused", words=_STEP_WORDS, note=_OWN_STEP)
def custom_step_logs_reach_callbacks_and_history(front):
    """The extra keys of a custom train_step/test_step's logs, in batch hooks, epoch
    logs (as Keras gives them: the last step's value) and History (val_ too)."""
    with front.scope():
        model = _ExtraLogs()
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    observation = fit_observed(
        front,
        model,
        features(8),
        targets(8),
        batch_size=4,
        epochs=2,
        validation_data=validation_pair(),
    )
    observation.pop("weights")
    return observation


@case("models")
def vector_valued_metric(front):
    """F1Score(average=None): one value per class in logs and History."""
    model = classifier(
        front,
        loss="categorical_crossentropy",
        metrics=lambda: [keras.metrics.F1Score(average=None, threshold=0.3, name="f1")],
    )
    y = keras.utils.to_categorical(labels(12), 3)
    return fit_observed(
        front,
        model,
        features(12),
        y,
        batch_size=4,
        epochs=2,
        validation_data=(features(6, seed=3), keras.utils.to_categorical(labels(6, seed=1), 3)),
    )


def _three_outputs(front, **compile_args):
    with front.scope():
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(3, activation="tanh", name="hidden")(inputs)
        outputs = [
            keras.layers.Dense(2, name="main")(hidden),
            keras.layers.Dense(1, name="aux")(hidden),
            keras.layers.Dense(1, name="extra")(hidden),
        ]
        model = keras.Model(inputs, outputs, name="three_outputs")
        model.compile(optimizer=keras.optimizers.SGD(0.1), **compile_args)
    return model


@case("models")
def none_losses_for_some_outputs(front):
    """loss=['mse', None, None] and one target array: only `main` is trained on."""
    model = _three_outputs(front, loss=["mse", None, None])
    return fit_observed(
        front,
        model,
        features(8),
        targets(8),
        batch_size=4,
        epochs=2,
    )


@case("models")
def sample_weights_per_output(front):
    """Two outputs with a loss dict, loss_weights, and a sample weight for each output."""
    with front.scope():
        inputs = keras.Input((4,))
        first = keras.layers.Dense(2, name="first")(inputs)
        second = keras.layers.Dense(1, name="second")(inputs)
        model = keras.Model(inputs, {"first": first, "second": second}, name="two_outputs")
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss={"first": "mse", "second": "mae"},
            loss_weights={"first": 1.0, "second": 0.5},
            metrics={"first": ["mae"], "second": ["mse"]},
        )
    y = {"first": targets(8), "second": targets(8, width=1, seed=5)}
    weights = {
        "first": np.linspace(0.0, 1.0, 8).astype("float32"),
        "second": np.linspace(1.0, 0.0, 8).astype("float32"),
    }
    return fit_observed(
        front,
        model,
        features(8),
        y,
        sample_weight=weights,
        batch_size=4,
        epochs=2,
    )


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="subclassed")
        self.hidden = keras.layers.Dense(3, activation="tanh", name="hidden")
        self.out = keras.layers.Dense(3, activation="softmax", name="out")

    def call(self, x):
        return self.out(self.hidden(x))


@case("models")
def subclassed_model_with_call(front):
    """A subclassed model with call() and Keras' own steps, unbuilt before fit."""
    with front.scope():
        model = _Subclassed()
        model.compile(
            optimizer=keras.optimizers.SGD(0.2),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    history = front.fit(
        model, features(12), labels(12), batch_size=4, epochs=2, shuffle=False, verbose=0
    )
    return {**history_of(history), "weights": weights_of(model)}
