"""Cases: every input form Keras' `fit`/`evaluate`/`predict` take, and positional arguments.

NumPy arrays (a dict or list of them for a model with several inputs, `sample_weight`,
`class_weight`, `validation_split`), batched `tf.data.Dataset`s (finite, `.repeat()`ed
or infinite with `steps_per_epoch`, of unknown length, with nested, dict or ragged
elements), `keras.utils.PyDataset` (with its `workers`, `use_multiprocessing` and
`max_queue_size`), Python generators, and `validation_data` in each form. Where Keras
continues an iterator across epochs (a dataset with `steps_per_epoch`), the weights show
which batches each epoch saw.
"""

import contextlib
import multiprocessing

import keras
import numpy as np
import tensorflow as tf
from conformance import Recorder, case, fit_observed, history_of, structure, weights_of
from tiny import classifier, features, labels, regressor, targets

X, Y = features(12), targets(12)  # 3 full batches of 4: partial batches are cases_steps'.
X_VAL, Y_VAL = features(6, seed=3), targets(6, seed=4)


def _two_inputs(front):
    """Inputs `a` (3 features) and `b` (2) → concatenated → Dense(2)."""
    with front.scope():
        a = keras.Input((3,), name="a")
        b = keras.Input((2,), name="b")
        joined = keras.layers.Concatenate()([a, b])
        model = keras.Model({"a": a, "b": b}, keras.layers.Dense(2, name="out")(joined))
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", metrics=["mae"])
    return model


def _split(x):
    return {"a": x[:, :3], "b": x[:, 3:5]}


X5 = features(12, width=5)


@case("inputs")
def arrays_dict_of_inputs(front):
    """A dict of arrays for a model with inputs named a and b."""
    return fit_observed(front, _two_inputs(front), _split(X5), Y, batch_size=4, epochs=2)


@case("inputs")
def arrays_list_of_inputs(front):
    """A list of arrays (of different widths) for a model with two inputs."""
    inputs = _split(X5)
    return fit_observed(
        front,
        _two_inputs(front),
        [inputs["a"], inputs["b"]],
        Y,
        batch_size=4,
        epochs=2,
    )


@case("inputs")
def arrays_sample_weight(front):
    """sample_weight= as an array, 0 to 2 across the examples."""
    weights = np.linspace(0.0, 2.0, 12).astype("float32")
    return fit_observed(
        front,
        regressor(front, metrics=["mae"]),
        X,
        Y,
        sample_weight=weights,
        batch_size=4,
        epochs=2,
    )


@case("inputs")
def arrays_class_weight(front):
    """class_weight= as a dict from class to weight."""
    return fit_observed(
        front,
        classifier(front),
        features(12),
        labels(12),
        class_weight={0: 1.0, 1: 3.0, 2: 0.5},
        batch_size=4,
        epochs=2,
    )


@case("inputs")
def arrays_validation_split(front):
    """validation_split=0.25 of 16: the last 4 examples validate, the first 12 train."""
    return fit_observed(
        front,
        regressor(front, metrics=["mae"]),
        features(16),
        targets(16),
        validation_split=0.25,
        batch_size=4,
        epochs=2,
    )


@case("inputs")
def arrays_shuffled_by_default(front):
    """shuffle=True (the default): the same steps, hooks and keys. The order is the
    shuffler's own, so only the structure is compared, not the values."""
    recorder = Recorder()
    model = regressor(front)
    history = front.fit(model, X, Y, batch_size=4, epochs=2, verbose=0, callbacks=[recorder])
    return structure({"events": recorder.events, **history_of(history)})


def _dataset(x, y, batch, *rest):
    return tf.data.Dataset.from_tensor_slices((x, y, *rest)).batch(batch)


@case("inputs")
def dataset_finite_with_validation_dataset(front):
    """A batched (x, y) dataset, and one as validation_data."""
    return fit_observed(
        front,
        regressor(front, metrics=["mae"]),
        _dataset(X, Y, 4),
        epochs=2,
        validation_data=_dataset(X_VAL, Y_VAL, 4),
    )


@case("inputs")
def dataset_with_a_partial_last_batch(front):
    """10 examples batched by 4: batches of 4, 4 and 2, each a step, as in Keras."""
    stream = _dataset(features(10), targets(10), 4)
    return fit_observed(front, regressor(front), stream, epochs=2)


@case("inputs")
def dataset_repeated_with_steps_per_epoch(front):
    """A `.repeat()`ed dataset of 3 batches, steps_per_epoch=4: epoch 1 continues where
    epoch 0 stopped (batches 4-7 of the stream)."""
    return fit_observed(
        front,
        regressor(front),
        _dataset(X, Y, 4).repeat(),
        epochs=2,
        steps_per_epoch=4,
    )


@case("inputs")
def dataset_infinite_with_steps_per_epoch(front):
    """An endless dataset (a counter mapped to examples), steps_per_epoch=3, 2 epochs."""

    def example(i):
        value = tf.cast(i % 7, tf.float32) / 7.0
        return tf.stack([value, -value, value * value, 1.0]), tf.stack([value, 2.0 * value])

    stream = tf.data.Dataset.counter().map(example).batch(4)
    return fit_observed(front, regressor(front), stream, epochs=2, steps_per_epoch=3)


@case("inputs")
def dataset_of_unknown_length(front):
    """A filtered dataset (cardinality unknown): each epoch runs until it ends. Keras
    learns the length in the first epoch: there it calls on_train_batch_begin(3) for
    the step that finds the data used up, with no end hook, and History.params["steps"]
    stays None; callbacks see exactly that."""
    stream = _dataset(X, Y, 4).filter(lambda x, y: tf.reduce_sum(x) > -1e9)
    return fit_observed(front, regressor(front), stream, epochs=2)


@case("inputs")
def dataset_of_nested_inputs(front):
    """((a, b), y) elements for a model whose inputs are a list."""
    with front.scope():
        a = keras.Input((3,), name="a")
        b = keras.Input((2,), name="b")
        out = keras.layers.Dense(2, name="out")(keras.layers.Concatenate()([a, b]))
        model = keras.Model([a, b], out)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    inputs = _split(X5)
    stream = tf.data.Dataset.from_tensor_slices(((inputs["a"], inputs["b"]), Y)).batch(4)
    return fit_observed(front, model, stream, epochs=2)


@case("inputs")
def dataset_of_dict_inputs(front):
    """({"a": ..., "b": ...}, y) elements for a model with named inputs."""
    stream = tf.data.Dataset.from_tensor_slices((_split(X5), Y)).batch(4)
    return fit_observed(front, _two_inputs(front), stream, epochs=2)


@case("inputs")
def dataset_with_sample_weights(front):
    """(x, y, sample_weight) elements."""
    weights = np.linspace(0.0, 2.0, 12).astype("float32")
    return fit_observed(
        front, regressor(front, metrics=["mae"]), _dataset(X, Y, 4, weights), epochs=2
    )


class _RaggedMean(keras.layers.Layer):
    """The mean over a ragged sequence's steps: (batch, None, 2) ragged → (batch, 2)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = []

    def call(self, x):
        if type(x).__name__ not in self.seen:
            self.seen.append(type(x).__name__)
        return tf.reduce_mean(x, axis=1)


class _RaggedModel(keras.Model):
    def __init__(self):
        super().__init__(name="ragged_model")
        self.mean = _RaggedMean(name="ragged_mean")
        self.out = keras.layers.Dense(2, name="out")

    def call(self, x):
        return self.out(self.mean(x))


@case("inputs")
def dataset_of_ragged_elements(front):
    """Variable-length sequences as a tf.RaggedTensor, batched by tf.data."""
    lengths = [1, 3, 2, 4, 1, 2, 3, 2]
    rows = [
        np.full((n, 2), i / 8.0, "float32") + np.arange(n)[:, None] / 10
        for i, n in enumerate(lengths)
    ]
    x = tf.ragged.constant(rows, ragged_rank=1, dtype=tf.float32)
    stream = tf.data.Dataset.from_tensor_slices((x, targets(8))).batch(4)
    with front.scope():
        model = _RaggedModel()
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    observation = fit_observed(front, model, stream, epochs=2)
    return {**observation, "called_with_a_ragged_tensor": "RaggedTensor" in model.mean.seen}


class _Batches(keras.utils.PyDataset):
    """Batches of `batch` rows of (x, y); the last one partial."""

    def __init__(self, x, y, batch, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch = x, y, batch

    def __len__(self):
        return -(-len(self.x) // self.batch)

    def __getitem__(self, index):
        rows = slice(index * self.batch, (index + 1) * self.batch)
        return self.x[rows], self.y[rows]


@case("inputs")
def pydataset(front):
    """A keras.utils.PyDataset of 3 batches (__len__, __getitem__)."""
    return fit_observed(front, regressor(front), _Batches(X, Y, 4), epochs=2)


@case("inputs")
def pydataset_with_worker_threads(front):
    """workers=2 threads and a queue of 2 batches: the same batches, in order."""
    batches = _Batches(X, Y, 4, workers=2, use_multiprocessing=False, max_queue_size=2)
    return fit_observed(front, regressor(front), batches, epochs=2)


@contextlib.contextmanager
def _start_method(method):
    """multiprocessing's start method `method` while the block runs."""
    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method(method, force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(previous, force=True)


@case("inputs")
def pydataset_with_worker_processes(front):
    """use_multiprocessing=True: batches made in 2 worker processes, started by a fork
    server: a pool forked from this process (TensorFlow's threads, the test harness's)
    deadlocked in 2 of 2 CI rehearsals on 2026-12-05, a worker waiting forever on its
    pool's queue lock while the fit's end waited for it. tf.data then read ahead past the
    fit's last batch, which started a new pool as the fit ended (`GlobalBatches.prefetch`
    now stops that); whether that was the whole cause is not known, so the fork server
    stays."""
    batches = _Batches(X, Y, 4, workers=2, use_multiprocessing=True, max_queue_size=2)
    with _start_method("forkserver"):
        return fit_observed(front, regressor(front), batches, epochs=1)


def _generator(x, y, batch, *, forever=False):
    while True:
        for start in range(0, len(x), batch):
            yield x[start : start + batch], y[start : start + batch]
        if not forever:
            return


@case("inputs")
def generator_for_one_epoch(front):
    """A generator of 3 batches: as for a dataset of unknown length, the step that finds
    it used up gets on_train_batch_begin(3) and no end hook; params["steps"] is None."""
    return fit_observed(front, regressor(front), _generator(X, Y, 4), epochs=1)


@case("inputs")
def generator_endless_with_steps_per_epoch(front):
    """An endless generator of 3-batch rounds, steps_per_epoch=2: epochs continue it."""
    return fit_observed(
        front, regressor(front), _generator(X, Y, 4, forever=True), epochs=3, steps_per_epoch=2
    )


@case("inputs")
def validation_data_with_sample_weights(front):
    """validation_data=(x, y, sample_weight): weighted val_ values."""
    weights = np.array([0.0, 1.0, 2.0, 1.0, 0.5, 0.0], "float32")
    return fit_observed(
        front,
        regressor(front, metrics=["mae"]),
        X,
        Y,
        batch_size=4,
        epochs=2,
        validation_data=(X_VAL, Y_VAL, weights),
    )


@case("inputs")
def validation_data_as_pydataset(front):
    """validation_data as a PyDataset."""
    return fit_observed(
        front,
        regressor(front, metrics=["mae"]),
        X,
        Y,
        batch_size=4,
        epochs=2,
        validation_data=_Batches(X_VAL, Y_VAL, 4),
    )


@case("inputs")
def validation_data_as_generator(front):
    """An endless validation generator needs validation_steps (2 here)."""
    return fit_observed(
        front,
        regressor(front, metrics=["mae"]),
        X,
        Y,
        batch_size=4,
        epochs=2,
        validation_data=_generator(X_VAL, Y_VAL, 4, forever=True),
        validation_steps=2,
    )


@case("inputs")
def fit_positional_arguments(front):
    """fit(x, y, batch_size, epochs, verbose, callbacks, validation_split, validation_data,
    shuffle) by position, as `model.fit(x, y, 4, 2, 0, ...)`."""
    recorder = Recorder()
    model = regressor(front)
    history = front.fit(model, X, Y, 4, 2, 0, [recorder], 0.0, (X_VAL, Y_VAL), False)
    return {"events": recorder.events, **history_of(history), "weights": weights_of(model)}


@case("inputs")
def evaluate_positional_arguments(front):
    """evaluate(x, y, batch_size, verbose, sample_weight, steps, callbacks, return_dict)."""
    model = regressor(front, metrics=["mae"])
    weights = np.linspace(0.5, 1.5, 12).astype("float32")
    recorder = Recorder()
    listed = front.evaluate(model, X, Y, 4, 0)
    named = front.evaluate(model, X, Y, 4, 0, weights, None, [recorder], True)
    return {"listed": listed, "named": named, "events": recorder.events}


@case("inputs")
def predict_positional_arguments(front):
    """predict(x, batch_size, verbose, steps, callbacks)."""
    model = regressor(front)
    recorder = Recorder()
    return {
        "predictions": front.predict(model, X, 4, 0, None, [recorder]),
        "events": recorder.events,
    }


@case("inputs")
def evaluate_and_predict_a_dataset(front):
    """A batched dataset to evaluate (x, y) and predict (x only), steps= capping both."""
    model = regressor(front, metrics=["mae"])
    result = front.evaluate(model, _dataset(X, Y, 4), verbose=0, return_dict=True)
    capped = front.evaluate(model, _dataset(X, Y, 4), steps=2, verbose=0, return_dict=True)
    x_only = tf.data.Dataset.from_tensor_slices(X).batch(4)
    return {
        "result": result,
        "capped": capped,
        "predictions": front.predict(model, x_only, verbose=0),
        "predictions_capped": front.predict(model, x_only, steps=2, verbose=0),
    }
