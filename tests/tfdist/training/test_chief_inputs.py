"""`tfdist.fit`'s rules for data served from the chief under parameter_server: what may be
given with it, steps per epoch, validation data (the dataset, PyDataset and generator cases
on a real cluster: the parameter_server cases of tests/keras_conformance)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdist
from tfdist.config import ConfigError
from tfdist.data.chief_service import script_batches
from tfdist.training.chief_inputs import (
    _batch_size,
    _check_keras_rules,
    _steps,
    _validation_fn,
    chief_host,
)


def batches_of(n, batch):
    x = np.arange(n, dtype=np.float32)[:, None]
    return tf.data.Dataset.from_tensor_slices((x, np.arange(n))).batch(batch)


def forever():
    while True:
        yield np.zeros((4, 1), np.float32), np.zeros(4)


class Three(keras.utils.PyDataset):
    def __len__(self):
        return 3

    def __getitem__(self, index):
        return np.zeros((5, 1), np.float32), np.zeros(5)


@pytest.mark.parametrize(
    "given, named",
    [
        ({"y": np.zeros(3)}, "y"),
        ({"batch_size": 8, "validation_split": 0.2}, "batch_size, validation_split"),
        ({"sample_weight": np.ones(3), "class_weight": {0: 1.0}}, "sample_weight, class_weight"),
    ],
)
def test_a_script_dataset_brings_its_own_targets_and_batches(given, named):
    arguments = dict.fromkeys(["y", "batch_size", "sample_weight", "class_weight"])
    arguments.update(validation_split=0.0)
    arguments.update(given)
    with pytest.raises(ConfigError, match=f"^x is a PyDataset: .*so {named} cannot be given too"):
        _check_keras_rules("a PyDataset", **arguments)


def test_an_epoch_is_one_pass_its_partial_batch_included():
    assert _steps(script_batches(batches_of(10, 4)), None, 1) == 3
    assert _steps(script_batches(Three()), None, 1) == 3
    assert _steps(script_batches(batches_of(10, 4)), None, 2) == 1  # Micro-batches per step.
    unknown = batches_of(10, 4).filter(lambda x, y: True)  # Counted by reading one pass.
    assert _steps(script_batches(unknown), None, 1) == 3
    assert _steps(script_batches(forever()), 7, 1) == 7


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: batches_of(10, 4).repeat(), "^x is a tf.data.Dataset with no length"),
        (forever, "^x is a generator with no length .* pass steps_per_epoch="),
        (lambda: batches_of(0, 4), r"^x \(a tf.data.Dataset\) is empty"),
    ],
)
def test_no_length_without_steps_per_epoch_is_one_line(make, message):
    with pytest.raises(ConfigError, match=message):
        _steps(script_batches(make()), None, 1)


def test_the_batch_size_is_the_scripts_or_the_first_batchs():
    assert _batch_size(script_batches(batches_of(10, 4))) == 4
    assert _batch_size(script_batches(Three())) == 5
    unbatched_op = tf.data.Dataset.from_tensors((np.zeros((6, 1), np.float32), np.zeros(6)))
    assert _batch_size(script_batches(unbatched_op)) == 6


def test_validation_is_read_by_the_coordinator_as_given():
    arrays = _validation_fn((np.zeros((10, 2), np.float32), np.zeros(10)), None, 4)
    assert [len(b[1]) for b in arrays(None)] == [4, 4, 2]
    dataset = _validation_fn(batches_of(10, 3), 2, 99)
    assert [len(b[1]) for b in dataset(None)] == [3, 3]
    assert [len(b[1]) for b in _validation_fn(Three(), None, 4)(None)] == [5, 5, 5]
    assert _validation_fn(None, None, 4) is None


def test_outside_a_cluster_the_service_is_on_localhost():
    assert chief_host(tfdist.make_strategy("one_device", cluster=None)) == "localhost"
