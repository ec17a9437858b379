"""Every source behind the one contract, and the one-line errors of bad files."""

import data_files
import numpy as np
import pytest
import tensorflow as tf

from tfdist.config import ConfigError
from tfdist.data.pipeline import input_errors, load_source, make_dataset_fn
from tfdist.data.tfrecords import parse_feature_spec, tfrecord_source


def _all(source, split="train"):
    fn = make_dataset_fn(source, split, global_batch_size=1000, training=False)
    features, labels = next(iter(fn(None)))
    return features.numpy(), labels.numpy()


def _check_rows(features, labels, count):
    """Rows from data_files: x = [id, id + 0.5, id + 1], label = id % 4; any order."""
    order = np.argsort(features[:, 0])
    ids = np.arange(count)
    np.testing.assert_allclose(features[order], data_files.rows(0, count)[1])
    np.testing.assert_array_equal(labels[order], ids % 4)


def test_tfrecord_infers_the_spec_and_counts(tmp_path):
    pattern = data_files.write_tfrecords(str(tmp_path), [7, 5])
    source = load_source("tfrecord", train_files=pattern, id_key="id")
    assert (source.input_shape, source.num_classes, source.num_train) == ((3,), 4, 12)
    assert source.num_validation == 0 and source.splits["train"].sizes == (7, 5)
    _check_rows(*_all(source), 12)


def test_tfrecord_with_a_spec_or_a_parse_function(tmp_path):
    pattern = data_files.write_tfrecords(str(tmp_path), [6])
    source = load_source(
        "tfrecord",
        train_files=pattern,
        validation_files=pattern,
        feature_spec="x:float32:3,label:int64",
        num_classes=10,
    )
    assert (source.input_shape, source.num_classes, source.num_validation) == ((3,), 10, 6)
    _check_rows(*_all(source, "validation"), 6)

    def parse(record):
        example = tf.io.parse_single_example(
            record,
            {
                "x": tf.io.FixedLenFeature([3], tf.float32),
                "label": tf.io.FixedLenFeature([], tf.int64),
            },
        )
        return {"x": example["x"]}, tf.cast(example["label"], tf.int32)

    custom = tfrecord_source(train_files=[pattern], parse_fn=parse)
    features, labels = next(iter(custom.read("train").batch(6)))
    assert features["x"].shape == (6, 3) and custom.num_classes == 4


def test_csv_reads_columns_by_name(tmp_path):
    pattern = data_files.write_csv(str(tmp_path), [4, 6])
    source = load_source("csv", train_files=pattern, id_key="id")
    assert (source.input_shape, source.num_classes, source.num_train) == ((3,), 4, 10)
    _check_rows(*_all(source), 10)
    with_id = load_source("csv", train_files=pattern)  # No id_key: the id is a feature.
    assert with_id.input_shape == (4,)
    by_id = [
        sorted(
            int(x[0])
            for x, _ in source.read(
                "train", tf.distribute.InputContext(2, p, 2), shard_policy="hash"
            )
        )
        for p in range(2)
    ]
    by_line = [
        sorted(
            int(x[0])
            for x, _ in with_id.read(
                "train", tf.distribute.InputContext(2, p, 2), shard_policy="hash"
            )
        )
        for p in range(2)
    ]
    assert sorted(by_id[0] + by_id[1]) == sorted(by_line[0] + by_line[1]) == list(range(10))
    assert by_id != by_line  # Keyed by the id column, not by file and line.


def test_npz_and_numpy_arrays(tmp_path):
    train = data_files.write_npz(str(tmp_path / "train.npz"), 0, 9)
    val = data_files.write_npz(str(tmp_path / "val.npz"), 9, 3)
    source = load_source("npz", train_files=train, validation_files=val, id_key="id")
    assert (source.input_shape, source.num_train, source.num_validation) == ((3,), 9, 3)
    _check_rows(*_all(source), 9)


def test_image_folder_labels_by_folder(tmp_path):
    root = data_files.write_image_folder(str(tmp_path / "images"), per_class=3)
    source = load_source("image_folder", train_files=root, validation_files=root, image_size=(5, 5))
    assert (source.input_shape, source.num_classes, source.num_train) == ((5, 5, 3), 3, 9)
    images, labels = _all(source)
    assert images.dtype == np.float32 and images.shape == (9, 5, 5, 3)
    # Class k is filled with 40 * (k + 1) (scaled to [0, 1]).
    np.testing.assert_allclose(images[:, 2, 2, 1], 40 * (labels + 1) / 255.0, rtol=1e-5)
    assert sorted(labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_feature_spec_text():
    spec = parse_feature_spec("pixels:float32:8x8, label:int64,name:string")
    assert spec["pixels"] == tf.io.FixedLenFeature([8, 8], tf.float32)
    assert spec["label"].shape == [] and spec["name"].dtype == tf.string
    with pytest.raises(
        ConfigError,
        match=r"feature_spec entry 'pixels:double' must be "
        r"NAME:DTYPE\[:SHAPE\]",
    ):
        parse_feature_spec("pixels:double")


# ----- bad input: one line naming the file or field, and the fix -------------------------
def test_glob_that_matches_nothing(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"train_files \('.*nothing-\*.tfrecord'\) matches "
        r"no file .* train_files='data/train-\*.tfrecord'",
    ):
        load_source("tfrecord", train_files=str(tmp_path / "nothing-*.tfrecord"))


def _corrupt(path):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))


def test_corrupt_tfrecord_names_the_file(tmp_path):
    data_files.write_tfrecords(str(tmp_path), [5, 5])
    _corrupt(tmp_path / "train-001.tfrecord")
    with pytest.raises(
        ConfigError,
        match=r"TFRecord file '.*train-001.tfrecord' is corrupt "
        r"\(.*\); regenerate it or leave it out of "
        r"train_files\.$",
    ):
        load_source("tfrecord", train_files=str(tmp_path / "*.tfrecord"))


def test_feature_spec_that_does_not_match(tmp_path):
    pattern = data_files.write_tfrecords(str(tmp_path), [4])
    with pytest.raises(
        ConfigError,
        match=r"TFRecord file '.*train-000.tfrecord' does not "
        r"match the feature spec \(.*x.*\); its records "
        r"hold id: int64\[1\], label: int64\[1\], "
        r"x: float32\[3\]; fix feature_spec or label_key\.$",
    ):
        load_source("tfrecord", train_files=pattern, feature_spec="x:float32:8,label:int64")
    with pytest.raises(
        ConfigError,
        match=r"has no feature 'target' for the label \(features: "
        r"id, label, x\); pass label_key='NAME'",
    ):
        load_source("tfrecord", train_files=pattern, label_key="target")


def test_csv_missing_column_or_field(tmp_path):
    pattern = data_files.write_csv(str(tmp_path / "a"), [3], header=["x0", "x1", "x2", "y", "z"])
    with pytest.raises(
        ConfigError,
        match=r"CSV file '.*train-000.csv' has no column 'label' "
        r"\(its columns: x0, x1, x2, y, z\); pass "
        r"label_key='NAME'",
    ):
        load_source("csv", train_files=pattern)
    pattern = data_files.write_csv(str(tmp_path / "b"), [3])
    path = str(tmp_path / "b" / "train-000.csv")
    lines = open(path).read().splitlines()
    open(path, "w").write("\n".join(lines[:2] + ["7,1.0,2.0,3"] + lines[3:]) + "\n")
    with pytest.raises(
        ConfigError,
        match=r"CSV file '.*train-000.csv' cannot be parsed "
        r"\(.*\); each row needs a number in every column",
    ):
        load_source("csv", train_files=pattern)


def test_error_while_training_names_the_file(tmp_path):
    """A file that breaks only when read (an undecodable image) is found and named."""
    root = data_files.write_image_folder(str(tmp_path / "images"), per_class=2)
    source = load_source("image_folder", train_files=root)
    (tmp_path / "images" / "dog" / "01.png").write_bytes(b"not a png")
    fn = make_dataset_fn(source, "train", global_batch_size=6, training=True)

    @tf.function
    def first_batch():  # As the trainer reads it: inside its compiled loop.
        return next(iter(fn(None)))

    with pytest.raises(ConfigError, match=r"image file '.*dog/01.png' cannot be decoded"):
        with input_errors(source):
            first_batch()


def test_a_worker_with_an_empty_part_gets_one_line_not_a_traceback(tmp_path):
    """file policy, 2 workers, the second file empty: worker 1 has nothing to train on."""
    pattern = data_files.write_tfrecords(str(tmp_path), [40, 0])
    source = load_source("tfrecord", train_files=pattern)
    fn = make_dataset_fn(source, "train", global_batch_size=8, training=True, shard_policy="file")
    with pytest.raises(
        ConfigError,
        match=r"an input pipeline of dataset 'tfrecord' ran out of "
        r"training examples .*shard_policy='data'",
    ):
        with input_errors(source):
            next(iter(fn(tf.distribute.InputContext(2, 1, 2))))
