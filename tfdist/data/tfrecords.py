"""TFRecord sources: `tf.train.Example` files by glob, and prepared TFDS datasets.

This module owns turning TFRecord records into `(features, label)`: through a
feature spec (inferred from the first record, given as `NAME:DTYPE[:SHAPE],...`
or as `tf.io.FixedLenFeature`s) parsed a chunk at a time, or through the user's
parse function; and checking every file once when the source is loaded (each is
read to count its records and labels, so a corrupt record or a spec that does
not match is reported naming the file and the fix). TFDS datasets are read from
their TFRecord shards with the dataset's own decoder. Reading files in order and
keying records is `tfdist.data.files`'.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence

import tensorflow as tf

from tfdist.config import ConfigError
from tfdist.data.files import READ_ERRORS, FileSplit, describe_files, expand_files
from tfdist.data.sources import DataSource, count_classes
from tfdist.tf_errors import tf_reason

_DTYPES = {
    "float32": tf.float32,
    "float": tf.float32,
    "int64": tf.int64,
    "int": tf.int64,
    "string": tf.string,
    "bytes": tf.string,
}


def parse_feature_spec(text: str) -> dict:
    """`"pixels:float32:8x8,label:int64"` → `{name: tf.io.FixedLenFeature}`."""
    spec = {}
    for entry in (e.strip() for e in text.split(",") if e.strip()):
        parts = entry.split(":")
        shape_text = parts[2] if len(parts) == 3 else ""
        if (
            len(parts) not in (2, 3)
            or parts[1] not in _DTYPES
            or not re.fullmatch(r"(\d+(x\d+)*)?", shape_text)
        ):
            raise ConfigError(
                f"feature_spec entry {entry!r} must be NAME:DTYPE[:SHAPE] with DTYPE one of "
                "float32, int64, string and SHAPE like 64 or 8x8, e.g. "
                "feature_spec='pixels:float32:8x8,label:int64'."
            )
        shape = [int(d) for d in shape_text.split("x")] if shape_text else []
        spec[parts[0]] = tf.io.FixedLenFeature(shape, _DTYPES[parts[1]])
    return spec


def describe_records(path: str) -> str:
    """The features of the first `tf.train.Example` of `path`: `x: float32[3], ...`."""
    try:
        first = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
        example = tf.train.Example.FromString(first.numpy()) if first is not None else None
    except Exception:
        return "unknown"
    if example is None:
        return "none (the file is empty)"
    kinds = {"float_list": "float32", "int64_list": "int64", "bytes_list": "string"}
    parts = []
    for name, feature in sorted(example.features.feature.items()):
        kind = feature.WhichOneof("kind")
        size = len(getattr(feature, kind).value) if kind else 0
        parts.append(f"{name}: {kinds.get(kind, '?')}[{size}]")
    return ", ".join(parts)


def _infer_spec(example: tf.train.Example, scalars: Sequence[str]) -> dict:
    dtypes = {"float_list": tf.float32, "int64_list": tf.int64, "bytes_list": tf.string}
    spec = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        size = len(getattr(feature, kind).value) if kind else 0
        shape = [] if name in scalars and size == 1 else [size]
        spec[name] = tf.io.FixedLenFeature(shape, dtypes.get(kind, tf.float32))
    return spec


@dataclasses.dataclass(frozen=True)
class ExampleSpec:
    """How a `tf.train.Example` becomes `(features, label)` for the built-in models.

    One feature keeps its shape; several are flattened and joined (in name order).
    """

    spec: Mapping[str, tf.io.FixedLenFeature]
    label_key: str
    feature_keys: tuple[str, ...]

    @property
    def input_shape(self) -> tuple:
        shapes = [tuple(self.spec[k].shape) for k in self.feature_keys]
        if len(shapes) == 1:
            return shapes[0] if shapes[0] else (1,)
        return (sum(int(tf.TensorShape(s).num_elements()) or 1 for s in shapes),)

    def decode_batch(self, serialized):
        keys = self.feature_keys + (self.label_key,)
        parsed = tf.io.parse_example(serialized, {k: self.spec[k] for k in keys})
        values = [tf.cast(parsed[k], tf.float32) for k in self.feature_keys]
        if len(values) == 1:
            features = values[0] if self.spec[self.feature_keys[0]].shape else values[0][:, None]
        else:
            features = tf.concat([tf.reshape(v, [tf.shape(v)[0], -1]) for v in values], axis=1)
        return features, tf.cast(tf.reshape(parsed[self.label_key], [-1]), tf.int32)

    def labels(self, serialized):
        label = {self.label_key: self.spec[self.label_key]}
        return tf.reshape(tf.io.parse_example(serialized, label)[self.label_key], [-1])


def example_spec(
    spec: Mapping[str, tf.io.FixedLenFeature], *, label_key: str, id_key: str | None, what: str
) -> ExampleSpec:
    """Checks `spec` for the built-in models: a label, numeric features."""
    if label_key not in spec:
        raise ConfigError(
            f"{what} has no feature {label_key!r} for the label (features: "
            f"{', '.join(sorted(spec))}); pass label_key='NAME' or add it to feature_spec."
        )
    keys = tuple(sorted(k for k in spec if k not in (label_key, id_key)))
    if not keys:
        raise ConfigError(
            f"{what} has no feature besides the label {label_key!r}; the model needs at least one."
        )
    text = [k for k in keys if spec[k].dtype == tf.string]
    if text:
        raise ConfigError(
            f"{what} has string feature(s) {', '.join(text)}; the built-in models read "
            "numbers: give tfrecord_source(parse_fn=...) through the Python API, or "
            "leave them out of feature_spec."
        )
    return ExampleSpec(dict(spec), label_key, keys)


class TFRecordSplit(FileSplit):
    """TFRecord files of serialized records, decoded by an ExampleSpec or a parse function."""

    def __init__(
        self,
        files,
        sizes,
        *,
        what,
        example_bytes,
        decode,
        batched,
        id_key=None,
        id_feature=None,
        flag="train_files",
    ):
        super().__init__(files, sizes, what=what, example_bytes=example_bytes)
        self.decode, self.batched_decode = decode, batched
        self._id_key, self._flag = id_key, flag
        self._id_feature = id_feature or tf.io.FixedLenFeature([], tf.string)

    def file_records(self, path):
        return tf.data.TFRecordDataset(path)

    def key(self, name, index, record):
        if not self._id_key:
            return super().key(name, index, record)
        ident = tf.io.parse_single_example(record, {self._id_key: self._id_feature})[self._id_key]
        if ident.dtype != tf.string:
            ident = tf.strings.as_string(ident)
        return tf.strings.reduce_join(tf.reshape(ident, [-1]), separator=",")

    def explain(self, path, error):
        if isinstance(error, tf.errors.DataLossError):
            return (
                f"TFRecord file {path!r} is corrupt ({tf_reason(error)}); regenerate it "
                f"or leave it out of {self._flag}."
            )
        return (
            f"TFRecord file {path!r} does not match the feature spec "
            f"({tf_reason(error)}); its records hold {describe_records(path)}; fix "
            "feature_spec or label_key."
        )


def _tfrecord_split(
    files, *, what, parse: ExampleSpec | None, parse_fn, id_key, flag, example_bytes
) -> tuple[TFRecordSplit, int]:
    """The split of `files` (each read once: counted, checked) and its largest label."""
    id_feature = parse.spec.get(id_key) if parse and id_key else None
    split = TFRecordSplit(
        files,
        [0] * len(files),
        what=what,
        example_bytes=example_bytes,
        decode=parse.decode_batch if parse else parse_fn,
        batched=parse is not None,
        id_key=id_key,
        id_feature=id_feature,
        flag=flag,
    )

    def labels_of(path):
        records = tf.data.TFRecordDataset(path)
        if parse is None:
            return records.map(lambda r: tf.cast(parse_fn(r)[1], tf.int64)).batch(1024)
        for first in records.take(1).batch(1):
            parse.decode_batch(first)  # Every feature of the spec, once per file.
        return records.batch(1024).map(parse.labels)

    return split, split.count(labels_of)


def _first_example(path: str) -> tf.train.Example:
    """The first record of `path` as a `tf.train.Example` (to infer the spec)."""
    try:
        first = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    except READ_ERRORS as error:
        raise ConfigError(
            f"TFRecord file {path!r} is corrupt ({tf_reason(error)}); "
            "regenerate it or leave it out of train_files."
        ) from None
    if first is None:
        raise ConfigError(
            f"TFRecord file {path!r} holds no record; write examples into it "
            "or leave it out of train_files."
        )
    try:
        return tf.train.Example.FromString(first.numpy())
    except Exception:
        raise ConfigError(
            f"TFRecord file {path!r} does not hold tf.train.Example records; "
            "give tfrecord_source(parse_fn=...) through the Python API."
        ) from None


def tfrecord_source(
    *,
    train_files,
    validation_files=None,
    feature_spec: None | str | Mapping[str, tf.io.FixedLenFeature] = None,
    parse_fn: Callable | None = None,
    label_key: str = "label",
    id_key: str | None = None,
    num_classes: int | None = None,
    name: str = "tfrecord",
) -> DataSource:
    """A source of TFRecord files of `tf.train.Example` records.

    Args:
      train_files, validation_files: comma-separated globs (or lists) of files.
      feature_spec: `{name: tf.io.FixedLenFeature}` or `"NAME:DTYPE[:SHAPE],..."`;
        None infers it from the first record (each feature a vector, the label and id
        scalars).
      parse_fn: instead of a spec, `parse_fn(serialized) -> (features, label)`.
      label_key: the label feature (spec only).
      id_key: a feature that names each example, hashed by the `hash` policy.
      num_classes: label classes; None counts them.
      name: the source's name.
    """
    train = expand_files(train_files, "train_files")
    validation = expand_files(validation_files, "validation_files") if validation_files else ()
    parse = None
    input_shape = None
    if parse_fn is None:
        if isinstance(feature_spec, str):
            spec = parse_feature_spec(feature_spec)
        elif feature_spec is not None:
            spec = dict(feature_spec)
        else:
            spec = _infer_spec(_first_example(train[0]), (label_key, id_key))
        parse = example_spec(
            spec, label_key=label_key, id_key=id_key, what=f"TFRecord file {train[0]!r}"
        )
        input_shape = parse.input_shape
    example_bytes = 4 * int(tf.TensorShape(input_shape or (64,)).num_elements() or 1) + 4
    splits, top = {}, -1
    for split_name, files, flag, patterns in (
        ("train", train, "train_files", train_files),
        ("validation", validation, "validation_files", validation_files),
    ):
        if files:
            splits[split_name], split_top = _tfrecord_split(
                files,
                what=describe_files(flag, patterns),
                parse=parse,
                parse_fn=parse_fn,
                id_key=id_key,
                flag=flag,
                example_bytes=example_bytes,
            )
            top = max(top, split_top)
    if input_shape is None:  # parse_fn: the shape of what it returns.
        first = next(iter(tf.data.TFRecordDataset(train[0]).take(1)))
        input_shape = tuple(tf.nest.flatten(parse_fn(first)[0])[0].shape)
    classes = count_classes([top] if top >= 0 else [], num_classes, f"{name} labels")
    return DataSource(name, tuple(input_shape), classes, splits)


# ----- TFDS -----------------------------------------------------------------------------
class TfdsSplit(FileSplit):
    """A prepared TFDS split read from its TFRecord shards."""

    batched_decode = False

    def __init__(self, files, sizes, *, what, features, example_bytes):
        super().__init__(files, sizes, what=what, example_bytes=example_bytes)
        self._features = features

    def file_records(self, path):
        return tf.data.TFRecordDataset(path)

    def decode(self, record):
        example = self._features.deserialize_example(record)
        return (tf.cast(example["image"], tf.float32) / 255.0, tf.cast(example["label"], tf.int32))


def tfds_source(name: str, data_dir: str | None, known: Sequence[str]) -> DataSource:
    """A TFDS dataset prepared under `data_dir` with `image` and `label` features."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ConfigError(
            f"Unknown dataset {name!r}. Expected one of: {', '.join(known)}, or a TFDS "
            "dataset name such as 'mnist'."
        ) from None
    if not builder.is_prepared():
        raise ConfigError(
            f"TFDS dataset {name!r} is not prepared on disk (looked in {builder.data_dir}) and "
            f"this machine cannot download it; run `tfds build {name} --data_dir=DIR` where "
            "there is network, copy DIR here and pass data_dir='DIR'."
        )
    info = builder.info
    if "image" not in info.features or "label" not in info.features:
        raise ConfigError(
            f"TFDS dataset {name!r} has features {list(info.features)}; the built-in job needs "
            "'image' and 'label'. Pass your own dataset function through the Python API."
        )
    if str(info.file_format).split(".")[-1].lower() != "tfrecord":
        raise ConfigError(
            f"TFDS dataset {name!r} is stored as {info.file_format}; tfdist reads "
            "TFRecord shards: rebuild it with `tfds build --file_format=tfrecord`."
        )
    shape = tuple(info.features["image"].shape)
    example_bytes = 4 * int(tf.TensorShape(shape).num_elements() or 1) + 4
    splits = {}
    for split_name, candidates in (("train", ("train",)), ("validation", ("validation", "test"))):
        found = next((s for s in candidates if s in info.splits), None)
        if found:
            split = info.splits[found]
            splits[split_name] = TfdsSplit(
                [os.fspath(p) for p in split.filepaths],
                split.shard_lengths,
                what=f"TFDS {name} {found} split",
                features=info.features,
                example_bytes=example_bytes,
            )
    return DataSource(name, shape, info.features["label"].num_classes, splits)
