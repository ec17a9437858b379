"""What tf.data reads ahead of a Keras stream's steps (tfdist.data.global_batches)."""

import keras
import numpy as np
import pytest

from tfdist.data.global_batches import adapter_batches
from tfdist.training.fit_inputs import shared_fn

X = np.arange(24, dtype="float32").reshape(12, 2)
Y = np.arange(12, dtype="float32").reshape(12, 1)


class _Batches(keras.utils.PyDataset):
    def __len__(self):
        return 3

    def __getitem__(self, index):
        return X[index * 4 : (index + 1) * 4], Y[index * 4 : (index + 1) * 4]


def _training_dataset(py_dataset):
    batches = adapter_batches(py_dataset, shuffle=False, class_weight=None, name="fit x")
    try:
        return batches, shared_fn(batches, repeat=True)()
    finally:
        batches.close()


@pytest.mark.parametrize(
    "workers, prefetched",
    [
        (dict(), True),  # No workers: tf.data reads ahead, as in Keras' own adapter.
        (dict(workers=2), False),  # Workers read ahead themselves: tf.data does not.
        (dict(workers=2, use_multiprocessing=True), False),
    ],
    ids=["no_workers", "threads", "processes"],
)
def test_tf_data_reads_ahead_only_of_a_py_dataset_without_workers(workers, prefetched):
    """A read-ahead past an epoch's last batch starts the next pass of the PyDataset, and
    past the fit's last a new pool of workers, stopped as it starts."""
    batches, dataset = _training_dataset(_Batches(**workers))

    assert batches.prefetch is prefetched
    assert ("Prefetch" in type(dataset).__name__) is prefetched
