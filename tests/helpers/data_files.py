"""Small data files written by the tests: TFRecord, CSV, npz and an image folder.

Every example carries its id: feature/column ``x`` holds ``[id, id + 0.5, ...]``,
``id`` holds the id itself and the label is ``id % NUM_CLASSES``.
"""

import os

import numpy as np
import tensorflow as tf

NUM_CLASSES = 4
WIDTH = 3


def rows(start, count):
    ids = np.arange(start, start + count)
    features = ids[:, None] + 0.5 * np.arange(WIDTH)[None, :]
    return ids, features.astype(np.float32), (ids % NUM_CLASSES).astype(np.int64)


def write_tfrecords(directory, sizes, prefix="train"):
    """One file per entry of ``sizes``; returns the glob matching them."""
    os.makedirs(directory, exist_ok=True)
    start = 0
    for i, size in enumerate(sizes):
        ids, features, labels = rows(start, size)
        with tf.io.TFRecordWriter(os.path.join(directory, f"{prefix}-{i:03d}.tfrecord")) as w:
            for ident, x, y in zip(ids, features, labels, strict=False):
                w.write(
                    tf.train.Example(
                        features=tf.train.Features(
                            feature={
                                "x": tf.train.Feature(float_list=tf.train.FloatList(value=x)),
                                "id": tf.train.Feature(
                                    int64_list=tf.train.Int64List(value=[ident])
                                ),
                                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[y])),
                            }
                        )
                    ).SerializeToString()
                )
        start += size
    return os.path.join(directory, f"{prefix}-*.tfrecord")


def write_csv(directory, sizes, prefix="train", header=None):
    os.makedirs(directory, exist_ok=True)
    start = 0
    header = header or ["id"] + [f"x{j}" for j in range(WIDTH)] + ["label"]
    for i, size in enumerate(sizes):
        ids, features, labels = rows(start, size)
        with open(os.path.join(directory, f"{prefix}-{i:03d}.csv"), "w") as f:
            f.write(",".join(header) + "\n")
            for ident, x, y in zip(ids, features, labels, strict=False):
                f.write(",".join([str(ident), *(f"{v:g}" for v in x), str(y)]) + "\n")
        start += size
    return os.path.join(directory, f"{prefix}-*.csv")


def write_npz(path, start, count):
    ids, features, labels = rows(start, count)
    np.savez(path, x=features, label=labels, id=ids)
    return path


def write_image_folder(directory, per_class=5, classes=("cat", "dog", "owl"), size=(6, 4)):
    """PNG images; class k's images are filled with the value 40 * (k + 1)."""
    for k, name in enumerate(classes):
        os.makedirs(os.path.join(directory, name), exist_ok=True)
        for i in range(per_class):
            image = np.full((*size, 3), 40 * (k + 1), np.uint8)
            image[0, 0, 0] = i
            tf.io.write_file(os.path.join(directory, name, f"{i:02d}.png"), tf.io.encode_png(image))
    return directory
