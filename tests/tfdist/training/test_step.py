"""The step's gradient arithmetic: IndexedSlices (an Embedding's gradient) accumulated over
micro-batches equal the dense sum, and an accumulated update equals one big batch's."""

import keras
import numpy as np
import tensorflow as tf

from tfdist.config import LoopConfig
from tfdist.distribute.strategies import make_strategy
from tfdist.training.step import _add, _as_slices, scaled
from tfdist.training.trainer import Trainer

ROWS, WIDTH, CLASSES = 12, 4, 3
# Two micro-batches of 4 examples, 2 ids each; ids 1 and 5 appear in both.
IDS = np.array([[1, 2], [5, 5], [1, 7], [3, 9], [5, 1], [0, 11], [1, 4], [8, 5]], np.int32)
LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int32)


def _embedding_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((2,), dtype="int32"),
            keras.layers.Embedding(ROWS, WIDTH),
            keras.layers.Flatten(),
            keras.layers.Dense(CLASSES),
        ]
    )


def _gradients(model, ids, labels):
    with tf.GradientTape() as tape:
        logits = model(ids, training=True)
        loss = tf.reduce_sum(
            keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        )
    return tape.gradient(loss, model.trainable_variables)


def test_embedding_gradients_are_indexed_slices_and_accumulate_to_the_dense_sum():
    model = _embedding_model()
    first = _gradients(model, IDS[:4], LABELS[:4])
    second = _gradients(model, IDS[4:], LABELS[4:])
    assert isinstance(first[0], tf.IndexedSlices)  # What makes _add's sparse path real.

    accumulated = [_add(a, b) for a, b in zip(first, second, strict=False)]

    assert isinstance(accumulated[0], tf.IndexedSlices)
    assert accumulated[0].values.shape[0] == first[0].values.shape[0] * 2  # Concatenated.
    whole = _gradients(model, IDS, LABELS)  # One batch of all 8 examples.
    for summed, expected in zip(accumulated, whole, strict=False):
        np.testing.assert_allclose(
            tf.convert_to_tensor(summed).numpy(),
            tf.convert_to_tensor(expected).numpy(),
            rtol=1e-5,
            atol=1e-6,
        )


def test_a_dense_gradient_joins_a_sparse_one_through_as_slices():
    model = _embedding_model()
    sparse = _gradients(model, IDS[:4], LABELS[:4])[0]
    dense = tf.random.stateless_normal([ROWS, WIDTH], [1, 2])

    as_slices = _as_slices(dense)
    mixed = _add(dense, sparse)

    assert isinstance(as_slices, tf.IndexedSlices)
    np.testing.assert_array_equal(tf.convert_to_tensor(as_slices).numpy(), dense.numpy())
    np.testing.assert_allclose(
        tf.convert_to_tensor(mixed).numpy(),
        dense.numpy() + tf.convert_to_tensor(sparse).numpy(),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        tf.convert_to_tensor(_add(sparse, dense)).numpy(),
        tf.convert_to_tensor(mixed).numpy(),
        rtol=1e-6,
    )


def test_scale_and_none_gradients():
    model = _embedding_model()
    sparse, kernel, _ = _gradients(model, IDS, LABELS)

    halved = scaled(sparse, 0.5)

    assert isinstance(halved, tf.IndexedSlices)
    np.testing.assert_allclose(
        tf.convert_to_tensor(halved).numpy(), 0.5 * tf.convert_to_tensor(sparse).numpy(), rtol=1e-6
    )
    np.testing.assert_allclose(scaled(kernel, 0.25).numpy(), 0.25 * kernel.numpy(), rtol=1e-6)
    assert scaled(None, 0.5) is None
    assert _add(None, kernel) is kernel and _add(kernel, None) is kernel
    assert _add(None, None) is None


def _one_update(kind, *, batch, grad_accum_steps):
    distribution = make_strategy(kind)
    with distribution.scope():
        model = _embedding_model(seed=3)
        model.compile(
            optimizer=keras.optimizers.SGD(0.5),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    loop = LoopConfig(grad_accum_steps=grad_accum_steps, steps_per_loop=1)
    trainer = Trainer(distribution, model, loop)

    def dataset_fn(context):
        return (
            tf.data.Dataset.from_tensor_slices((IDS, LABELS))
            .batch(context.get_per_replica_batch_size(batch))
            .repeat()
        )

    trainer.fit(dataset_fn, epochs=1, steps_per_epoch=1, global_batch_size=batch)
    return [v.numpy() for v in model.weights]


def test_two_accumulated_micro_batches_update_as_one_batch_of_both():
    start = [v.numpy() for v in _embedding_model(seed=3).weights]
    whole = _one_update("one_device", batch=8, grad_accum_steps=1)

    for kind in ("one_device", "mirrored"):
        accumulated = _one_update(kind, batch=4, grad_accum_steps=2)
        for got, expected, before in zip(accumulated, whole, start, strict=False):
            assert not np.allclose(expected, before)  # The update moved every weight.
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def _regularized_model():
    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6, kernel_regularizer=keras.regularizers.L2(0.1)),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(CLASSES),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.build((None, 4))
    return model


def test_gradients_of_given_values_are_those_of_the_weights_set_to_them():
    """A parameter_server worker's copy (ps_local_steps): the step reads the weights from
    values, its gradients are theirs (the regularizer's included), the model's own weights
    stay as they were, and BatchNorm's statistics still move."""
    from tfdist.training.metric_state import MetricState
    from tfdist.training.step import Step

    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    batch = (x, LABELS)
    model = _regularized_model()
    step = Step(
        model=model,
        optimizer=model.optimizer,
        reducer=list,
        grad_accum_steps=1,
        metric_state=MetricState(model.metrics),
    )
    own = [v.numpy() for v in model.trainable_variables]
    values = [tf.constant(w * 1.5 + 0.1) for w in own]
    moving_mean = model.layers[1].moving_mean.numpy()

    from_values, _ = step.gradients(batch, values=values)

    for weight, before in zip(model.trainable_variables, own, strict=True):
        np.testing.assert_array_equal(weight.numpy(), before)
    assert not np.allclose(model.layers[1].moving_mean.numpy(), moving_mean)
    for weight, value in zip(model.trainable_variables, values, strict=True):
        weight.assign(value)
    model.layers[1].moving_mean.assign(moving_mean)
    reference, _ = step.gradients(batch)
    for got, want in zip(from_values, reference, strict=True):
        assert np.abs(want.numpy()).max() > 0
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
