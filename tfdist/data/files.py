"""File sources: what every file-backed split shares, CSV files and an image folder.

This module owns finding a split's files (comma-separated globs, local or any
`tf.io.gfile` path), reading them a few at a time in a fixed order with each
record keyed `file:record` (or by an id column), so `tfdist.data.sharding` can split
by file, by example or by key, and finding the file behind a read error. CSV
files are checked once when the source is loaded (each is read to count its rows,
so a missing column or a bad field is reported naming the file and the fix); an
image that does not decode is found when it is read. TFRecord files and TFDS
datasets are `tfdist.data.tfrecords`'.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import tensorflow as tf

from tfdist.config import ConfigError
from tfdist.data.sharding import decode as decode_records
from tfdist.data.sources import DataSource, SplitReader, chunked, count_classes
from tfdist.tf_errors import tf_reason

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
_CYCLE = 8  # Files read at once.
READ_ERRORS = (tf.errors.DataLossError, tf.errors.InvalidArgumentError)


def describe_files(flag: str, patterns) -> str:
    """How the user named a split's files: `train_files ('data/*.csv')`."""
    text = patterns if isinstance(patterns, str) else ",".join(patterns)
    return f"{flag} ({text!r})"


def expand_files(patterns: str | Sequence[str], flag: str) -> tuple[str, ...]:
    """The files `patterns` (comma-separated globs) match, sorted per glob, no repeats."""
    parts = patterns.split(",") if isinstance(patterns, str) else list(patterns)
    files, seen = [], set()
    for pattern in (p.strip() for p in parts if p.strip()):
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise ConfigError(
                f"{flag} ({pattern!r}) matches no file (relative paths start at "
                f"{os.getcwd()}); fix the path or glob, e.g. "
                f"{flag}='data/train-*.tfrecord'."
            )
        for path in matched:
            if path not in seen:
                seen.add(path)
                files.append(path)
    if not files:
        raise ConfigError(f"{flag} is empty; pass a glob, e.g. {flag}='data/train-*.tfrecord'.")
    return tuple(files)


class FileSplit(SplitReader):
    """A split stored as files, read `_CYCLE` files at a time in a fixed order."""

    def __init__(self, files, sizes, *, what: str, example_bytes: int):
        super().__init__(what=what, num_examples=sum(sizes), example_bytes=example_bytes)
        self.files, self.sizes = tuple(files), tuple(sizes)

    def file_records(self, path: tf.Tensor) -> tf.data.Dataset:
        raise NotImplementedError

    def key(self, name: tf.Tensor, index: tf.Tensor, record) -> tf.Tensor:
        """The example's key: `file:record` (subclasses use an id feature when given)."""
        return tf.strings.join([name, tf.strings.as_string(index)], ":")

    def _keyed(self, path):
        name = tf.strings.split(path, "/")[-1]
        return (
            self.file_records(path)
            .enumerate()
            .map(lambda index, record: (self.key(name, index, record), record))
        )

    def records(self, files=None, *, keyed=False):
        files = tf.data.Dataset.from_tensor_slices(list(self.files)) if files is None else files
        return files.interleave(
            self._keyed if keyed else self.file_records,
            cycle_length=min(len(self.files), _CYCLE),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    def explain(self, path: str, error: Exception) -> str:
        return (
            f"{self.what}: file {path!r} cannot be read ({tf_reason(error)}); fix or "
            "regenerate it, or leave it out."
        )

    def count(self, labels_of: Callable[[str], tf.data.Dataset]) -> int:
        """Reads every file once: sets `sizes` and `num_examples`; returns the largest label.

        `labels_of(path)` gives a dataset of label batches of one file; a read error
        there or while counting becomes a one-line ConfigError naming the file.
        """
        sizes, top = [], -1
        for path in self.files:
            try:
                count, file_top = scan_labels(labels_of(path))
            except READ_ERRORS as error:
                raise ConfigError(self.explain(path, error)) from None
            sizes.append(count)
            top = max(top, file_top)
        self.sizes, self.num_examples = tuple(sizes), sum(sizes)
        return top

    def diagnose(self) -> str | None:
        for path in self.files:
            examples = decode_records(self.file_records(tf.constant(path)), self)
            try:
                examples.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1)
            except READ_ERRORS as error:
                return self.explain(path, error)
        return None


def scan_labels(labels: tf.data.Dataset) -> tuple[int, int]:
    """(examples, largest label) of one file, from a dataset of label batches."""
    count, top = labels.reduce(
        (tf.constant(0, tf.int64), tf.constant(-1, tf.int64)),
        lambda acc, batch: (
            acc[0] + tf.size(batch, tf.int64),
            tf.maximum(acc[1], tf.reduce_max(tf.cast(batch, tf.int64))),
        ),
    )
    return int(count), int(top)


# ----- CSV ------------------------------------------------------------------------------
def _header(path: str) -> tuple[str, ...]:
    with tf.io.gfile.GFile(path, "r") as f:
        line = f.readline()
    return tuple(c.strip().strip('"') for c in line.rstrip("\r\n").split(","))


class CsvSplit(FileSplit):
    """CSV files with a header row: numeric feature columns, an integer label column.

    Records are text lines, parsed a batch at a time (`tf.io.decode_csv`).
    """

    def __init__(self, files, *, what, columns, label_key, id_key, flag):
        super().__init__(files, [0] * len(files), what=what, example_bytes=4 * len(columns))
        self._label = columns.index(label_key)
        self._id = columns.index(id_key) if id_key else None
        self._features = [i for i, c in enumerate(columns) if i not in (self._label, self._id)]
        dtypes = [
            tf.int64 if i == self._label else tf.string if i == self._id else tf.float32
            for i in range(len(columns))
        ]
        self._defaults = [tf.constant([], dtype) for dtype in dtypes]  # Every field required.
        self._flag = flag

    def file_records(self, path):
        return tf.data.TextLineDataset(path).skip(1)

    def key(self, name, index, record):
        if self._id is None:
            return super().key(name, index + 2, record)  # The line number in the file.
        return tf.io.decode_csv(record, [self._defaults[self._id]], select_cols=[self._id])[0]

    def decode(self, lines):
        columns = tf.io.decode_csv(lines, self._defaults)
        features = tf.stack([columns[i] for i in self._features], axis=1)
        return features, tf.cast(columns[self._label], tf.int32)

    def explain(self, path, error):
        return (
            f"CSV file {path!r} cannot be parsed ({tf_reason(error)}); each row needs a "
            "number in every column and an integer label; fix the row or leave the file "
            f"out of {self._flag}."
        )

    def scan(self) -> int:
        return self.count(
            lambda path: self.file_records(path).batch(1024).map(lambda line: self.decode(line)[1])
        )


def _csv_columns(files, *, label_key, id_key, flag) -> tuple[str, ...]:
    columns = _header(files[0])
    for path in files:
        header = _header(path)
        for needed, option in ((label_key, "label_key"), (id_key, "id_key")):
            if needed and needed not in header:
                raise ConfigError(
                    f"CSV file {path!r} has no column {needed!r} (its columns: "
                    f"{', '.join(header)}); pass {option}='NAME' with one of them or fix "
                    "the header row."
                )
        if header != columns:
            raise ConfigError(
                f"CSV file {path!r} has columns {', '.join(header)} but {files[0]!r} has "
                f"{', '.join(columns)}; every file of {flag} needs the same header row."
            )
    if len(columns) < 2:
        raise ConfigError(
            f"CSV file {files[0]!r} has only the column(s) {', '.join(columns)}; "
            "it needs a label column and at least one feature column."
        )
    return columns


def csv_source(
    *,
    train_files,
    validation_files=None,
    label_key: str = "label",
    id_key: str | None = None,
    num_classes: int | None = None,
    name: str = "csv",
) -> DataSource:
    """A source of CSV files with a header row; every column but the label (and id) a feature.

    The features of a row become one float32 vector in header order.
    """
    train = expand_files(train_files, "train_files")
    columns = _csv_columns(train, label_key=label_key, id_key=id_key, flag="train_files")
    splits, top = {}, -1
    validation = expand_files(validation_files, "validation_files") if validation_files else ()
    for split_name, files, flag, patterns in (
        ("train", train, "train_files", train_files),
        ("validation", validation, "validation_files", validation_files),
    ):
        if not files:
            continue
        found = _csv_columns(files, label_key=label_key, id_key=id_key, flag=flag)
        if found != columns:
            raise ConfigError(
                f"CSV file {files[0]!r} has columns {', '.join(found)} but the "
                f"training files have {', '.join(columns)}; use one header."
            )
        split = CsvSplit(
            files,
            what=describe_files(flag, patterns),
            columns=columns,
            label_key=label_key,
            id_key=id_key,
            flag=flag,
        )
        top = max(top, split.scan())
        splits[split_name] = split
    classes = count_classes([top] if top >= 0 else [], num_classes, f"{name} labels")
    num_features = len(columns) - 1 - (1 if id_key else 0)
    return DataSource(name, (num_features,), classes, splits)


# ----- image folder ---------------------------------------------------------------------
class ImageFolderSplit(FileSplit):
    """One image file per example; its label is the index of its folder in `classes`."""

    batched_decode = False

    def __init__(self, files, *, what, classes, image_size, channels):
        super().__init__(
            files,
            [1] * len(files),
            what=what,
            example_bytes=4 * image_size[0] * image_size[1] * channels,
        )
        self._classes, self._size, self._channels = tuple(classes), image_size, channels

    def records(self, files=None, *, keyed=False):
        paths = tf.data.Dataset.from_tensor_slices(list(self.files)) if files is None else files
        if not keyed:
            return paths
        return paths.map(
            lambda p: (tf.strings.reduce_join(tf.strings.split(p, "/")[-2:], separator="/"), p)
        )

    def file_records(self, path):
        return tf.data.Dataset.from_tensors(path)

    def service_records(self):
        return chunked(tf.constant(list(self.files)), len(self.files))

    def decode(self, path):
        image = tf.io.decode_image(
            tf.io.read_file(path), channels=self._channels, expand_animations=False
        )
        image = tf.image.resize(image, self._size) / 255.0
        folder = tf.strings.split(path, "/")[-2]
        label = tf.argmax(
            tf.cast(tf.equal(list(self._classes), folder), tf.int32), output_type=tf.int32
        )
        return image, label

    def explain(self, path, error):
        return (
            f"image file {path!r} cannot be decoded ({tf_reason(error)}); replace or "
            "remove it (jpeg, png, bmp or gif)."
        )


def _image_files(root: str, flag: str, classes=None):
    if not tf.io.gfile.isdir(root):
        raise ConfigError(
            f"{flag} ({root!r}) is not a folder; dataset 'image_folder' reads a "
            "folder with one sub-folder of images per class."
        )
    found = sorted(
        d.rstrip("/") for d in tf.io.gfile.listdir(root) if tf.io.gfile.isdir(os.path.join(root, d))
    )
    classes = classes or found
    unknown = [c for c in found if c not in classes]
    if unknown:
        raise ConfigError(
            f"{flag} ({root!r}) has class folder(s) {', '.join(unknown)} that the "
            f"training folder lacks (it has {', '.join(classes)})."
        )
    files = [
        os.path.join(root, c, name)
        for c in found
        for name in sorted(tf.io.gfile.listdir(os.path.join(root, c)))
        if name.lower().endswith(IMAGE_EXTENSIONS)
    ]
    if not files:
        raise ConfigError(
            f"{flag} ({root!r}) has no images in class sub-folders (looked for "
            f"{', '.join(IMAGE_EXTENSIONS)} in {root}/CLASS/); put each class's "
            "images in its own sub-folder."
        )
    return classes, files


def image_folder_source(
    *,
    train_files: str,
    validation_files: str | None = None,
    image_size: tuple[int, int] | None = None,
    name: str = "image_folder",
) -> DataSource:
    """A source of images in `train_files/CLASS/*.png` (jpeg, png, bmp, gif).

    Class indices follow the sorted folder names. Images are decoded to 1 or 3
    channels, resized to `image_size` (default: the first image's size) and scaled
    to [0, 1].
    """
    classes, train = _image_files(train_files, "train_files")
    try:
        first = tf.io.decode_image(tf.io.read_file(train[0]), expand_animations=False)
    except READ_ERRORS as error:
        raise ConfigError(
            f"image file {train[0]!r} cannot be decoded ({tf_reason(error)}); replace or remove it."
        ) from None
    height, width, channels = first.shape
    size = tuple(image_size) if image_size else (int(height), int(width))
    channels = channels if channels in (1, 3) else 3
    splits = {
        "train": ImageFolderSplit(
            train,
            what=describe_files("train_files", train_files),
            classes=classes,
            image_size=size,
            channels=channels,
        )
    }
    if validation_files:
        _, files = _image_files(validation_files, "validation_files", classes)
        splits["validation"] = ImageFolderSplit(
            files,
            what=describe_files("validation_files", validation_files),
            classes=classes,
            image_size=size,
            channels=channels,
        )
    return DataSource(name, (*size, channels), len(classes), splits)
