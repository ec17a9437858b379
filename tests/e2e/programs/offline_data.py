"""The offline data the programs read in place of their downloads: the 8×8 digits.

Each program here is a Keras program as its tutorial or keras.io example writes it, with
two changes only: this data instead of a download, and `fit` (and `evaluate`, where the
program evaluates) called as `fit(model, ...)`, which is `model.fit` on plain Keras and
`tfdist.fit` under a strategy.
"""

import numpy as np

from tfdist.data.sources import load_digits_arrays

NUM_TEST = 297


def digits():
    """((x_train, y_train), (x_test, y_test)): images (N, 8, 8) in [0, 1], int64 labels."""
    images, labels = load_digits_arrays()
    order = np.random.default_rng(0).permutation(len(labels))
    images, labels = images[order].astype(np.float32), labels[order].astype(np.int64)
    return (images[NUM_TEST:], labels[NUM_TEST:]), (images[:NUM_TEST], labels[:NUM_TEST])
