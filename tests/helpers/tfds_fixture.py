"""A small real TFDS dataset written to disk by the tests (this machine cannot download)."""

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

NAME = "tfdist_tiny_images"
NUM_TRAIN, NUM_TEST = 96, 32


def _split(count: int, seed: int) -> tf.data.Dataset:
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 4
    # Learnable: class k lights up quadrant k.
    images = rng.integers(0, 60, (count, 8, 8, 1)).astype(np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 2)
        images[i, row * 4 : row * 4 + 4, col * 4 : col * 4 + 4] += 180
    return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})


def build(data_dir: str) -> str:
    """Writes the dataset under ``data_dir``; returns its name."""
    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(8, 8, 1)),
            "label": tfds.features.ClassLabel(num_classes=4),
        }
    )
    tfds.dataset_builders.store_as_tfds_dataset(
        name=NAME,
        version="1.0.0",
        features=features,
        data_dir=data_dir,
        split_datasets={"train": _split(NUM_TRAIN, 0), "test": _split(NUM_TEST, 1)},
    )
    return NAME
