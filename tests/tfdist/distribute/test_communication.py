"""The gradient all-reduce on two logical CPU replicas: sums, bytes per step, wire casts."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdist.config import CommunicationConfig, ConfigError
from tfdist.distribute.communication import (
    GradientReducer,
    collective_options,
    disable_optimizer_all_reduce,
)
from tfdist.distribute.strategies import make_strategy

# 0.1 is not exact in float16 or bfloat16, so a cast there and back shows in the sum.
DENSE = np.full([10, 4], 0.1, np.float32)
BIAS = np.arange(3, dtype=np.float32)


def _reduce(compression, gradients_fn):
    """Runs ``reducer(gradients_fn())`` on two replicas (/cpu:0 and /cpu:1), compiled."""
    strategy = make_strategy("mirrored").strategy
    reducer = GradientReducer(CommunicationConfig(grad_compression=compression))

    @tf.function
    def step():
        result = strategy.run(lambda: reducer(gradients_fn()))
        return [None if r is None else strategy.experimental_local_results(r) for r in result]

    return reducer, step()


def _gradients():
    replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.float32)
    return [tf.constant(DENSE), None, tf.constant(BIAS) * (replica + 1)]


@pytest.mark.parametrize(
    "compression, wire",
    [("none", np.float32), ("fp16", np.float16), ("bf16", tf.bfloat16.as_numpy_dtype)],
)
def test_sums_across_replicas_through_the_wire_dtype_and_back(compression, wire):
    _, (dense, none, bias) = _reduce(compression, _gradients)

    assert none is None
    for replica_value in (dense, bias):  # Every replica gets the same sum.
        np.testing.assert_array_equal(replica_value[0].numpy(), replica_value[1].numpy())
    assert dense[0].dtype == tf.float32 and bias[0].dtype == tf.float32  # Cast back.
    on_wire = np.float32(np.asarray(DENSE, wire))  # What 0.1 becomes in the wire dtype.
    np.testing.assert_array_equal(dense[0].numpy(), np.float32(np.asarray(2 * on_wire, wire)))
    np.testing.assert_array_equal(bias[0].numpy(), BIAS * 3)  # 0, 1, 2: exact in every dtype.
    if compression != "none":
        assert not np.array_equal(dense[0].numpy(), 2 * DENSE)  # The cast did happen.


@pytest.mark.parametrize("compression, float_bytes", [("none", 4), ("fp16", 2), ("bf16", 2)])
def test_bytes_per_step_count_what_goes_into_the_all_reduce(compression, float_bytes):
    reducer, _ = _reduce(compression, _gradients)

    # 40 + 3 floats in the wire dtype; the None sends nothing.
    assert reducer.bytes_per_step == (40 + 3) * float_bytes


@pytest.mark.parametrize("compression", ["none", "fp16"])
def test_indexed_slices_stay_rows_gathered_from_every_replica(compression):
    """An Embedding's gradient reaches the optimizer as Keras' own step gives it: rows, one
    per lookup (here two at index 1 from each of two replicas), whose dense sum is the
    reduced gradient; only the rows go on the wire."""

    def slices():
        return tf.IndexedSlices(tf.ones([2, 4]), tf.constant([1, 1]), tf.constant([5, 4]))

    reducer, (reduced,) = _reduce(compression, lambda: [slices()])

    assert isinstance(reduced[0], tf.IndexedSlices)
    assert reduced[0].values.dtype == tf.float32
    assert sorted(reduced[0].indices.numpy().tolist()) == [1, 1, 1, 1]
    expected = np.zeros([5, 4], np.float32)
    expected[1] = 4.0
    np.testing.assert_array_equal(tf.convert_to_tensor(reduced[0]).numpy(), expected)
    value_bytes = 2 if compression == "fp16" else 4
    assert reducer.bytes_per_step == 2 * 4 * value_bytes + 2 * 4  # Rows and their indices.


def test_outside_a_replica_context_nothing_is_summed():
    reducer = GradientReducer(CommunicationConfig(grad_compression="fp16"))

    (result,) = reducer([tf.constant([0.1, 1.0])])

    assert result.dtype == tf.float32
    np.testing.assert_array_equal(result.numpy(), np.float32(np.float16([0.1, 1.0])))
    assert reducer.bytes_per_step == 4


def test_collective_options_carry_the_config():
    options = collective_options(
        CommunicationConfig(
            all_reduce_pack_bytes=4096, collective_implementation="ring", collective_timeout=30.0
        )
    )

    assert options.bytes_per_pack == 4096 and options.timeout_seconds == 30.0
    assert options.implementation == tf.distribute.experimental.CommunicationImplementation.RING


def test_optimizer_all_reduce_is_switched_off_inner_one_included():
    with make_strategy("mirrored").strategy.scope():
        optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))
    pairs = [(tf.constant([1.0]), "v")]

    disable_optimizer_all_reduce(optimizer)

    assert optimizer._all_reduce_sum_gradients(pairs) == pairs
    assert optimizer.inner_optimizer._all_reduce_sum_gradients(iter(pairs)) == pairs


def test_an_optimizer_without_the_hook_is_refused_with_the_fix():
    with pytest.raises(
        ConfigError,
        match=r"^optimizer object has no _all_reduce_sum_gradients; "
        r".*Pin keras<3\.16",
    ):
        disable_optimizer_all_reduce(object())


def test_a_second_mirrored_strategy_in_the_process_reduces_other_shapes():
    # tensorflow/tensorflow#62790: strategies of one process share collective keys, so the
    # second one's first all-reduce of another shape failed and aborted all later ones.
    _, (first,) = _reduce("none", lambda: [tf.ones([7])])
    _, (second,) = _reduce("none", lambda: [tf.ones([3, 5])])
    _, (again,) = _reduce("none", lambda: [tf.ones([7])])

    np.testing.assert_array_equal(first[0].numpy(), np.full([7], 2.0))
    np.testing.assert_array_equal(second[0].numpy(), np.full([3, 5], 2.0))
    np.testing.assert_array_equal(again[0].numpy(), np.full([7], 2.0))
