"""Sharding policies: which examples of a split each input pipeline reads.

This module owns splitting one split's records between `num_pipelines` input
pipelines (one per worker under `multi_worker` and `parameter_server`) so that
the parts are disjoint and together cover the split, and turning the records a
pipeline keeps into decoded examples (vectorized decode, `cache` when the part
fits in memory). The policies:

- `file`: pipeline `p` reads files `p, p + P, ...`; needs at least as many files
  as pipelines. Each pipeline reads only its own files.
- `data`: every pipeline reads the split in its fixed order and keeps examples
  `p, p + P, ...`. Parts differ in size by at most one.
- `hash`: a pipeline keeps the examples whose key (an id feature or column, else
  `file:record`) hashes to it (`tf.strings.to_hash_bucket_fast`): an example stays
  on the same pipeline whatever the order of the data.
- `random`: a seeded permutation of the positions `0..N-1`
  (`tf.random.experimental.index_shuffle`) dealt round robin: disjoint parts whose
  sizes differ by at most one, a different split for a different seed.
- `off`: every pipeline reads the whole split.
- `auto`: `file` when there are at least as many files as pipelines, else `data`.

A reader (`tfdist.data.sources.SplitReader`) says what a split holds; batching,
shuffling and epochs belong to `tfdist.data.pipeline`. `pipeline_id` may be a tensor
(the worker index of a parameter-server worker, known only when the dataset is
created on it).
"""

from __future__ import annotations

import tensorflow as tf

from tfdist.config import SHARD_POLICIES, ConfigError, check_choice

_DECODE_CHUNK = 256  # Records decoded together by a vectorized decode.
CACHE_BYTES = 1 << 30  # A pipeline's decoded part up to this size is cached in memory.
_RANDOM_SALT = 0x5EED


def resolve_policy(policy: str, *, num_files: int, num_pipelines: int, what: str) -> str:
    """The concrete policy for `num_pipelines` pipelines (`auto` decided; `file` checked).

    Args:
      policy: one of `SHARD_POLICIES`.
      num_files: files of the split (0 when it is not read from files).
      num_pipelines: input pipelines that share the split.
      what: the split as the user named it, for error messages.
    """
    check_choice("shard_policy", policy, SHARD_POLICIES)
    if policy == "auto":
        return "file" if num_files and num_files >= num_pipelines else "data"
    if policy == "file" and num_files < num_pipelines:
        if not num_files:
            raise ConfigError(
                f"shard_policy 'file' splits files between the input pipelines, but {what} is "
                "not read from files; use shard_policy='data' (or 'auto')."
            )
        raise ConfigError(
            f"shard_policy 'file' needs at least one file per input pipeline, but {what} has "
            f"{num_files} file(s) for {num_pipelines} input pipelines; write the data as at "
            f"least {num_pipelines} files or use shard_policy='data' (or 'auto')."
        )
    return policy


def part_size(num_examples: int, policy: str, num_pipelines: int) -> int:
    """An upper bound of the examples one pipeline keeps (exact for data and random)."""
    if policy in ("off", "file", "hash") or num_pipelines == 1:
        return num_examples  # file and hash parts depend on the data; bounded by the whole.
    return -(-num_examples // num_pipelines)


def fits_in_memory(reader, policy: str, num_pipelines: int) -> bool:
    """Whether one pipeline's decoded part is at most `CACHE_BYTES`."""
    size = part_size(reader.num_examples, policy, num_pipelines) * reader.example_bytes
    return size <= CACHE_BYTES


def _keep(records: tf.data.Dataset, predicate) -> tf.data.Dataset:
    return records.filter(tf.autograph.experimental.do_not_convert(predicate))


def shard_records(
    reader, *, policy: str, num_pipelines: int, pipeline_id: int | tf.Tensor, seed: int = 0
) -> tf.data.Dataset:
    """The records of `reader`'s split that pipeline `pipeline_id` keeps under `policy`.

    `policy` must be resolved (`resolve_policy`). Records stay in the split's
    fixed order, so the parts are the same on every run.
    """
    if num_pipelines == 1 or policy == "off":
        return reader.records()
    if policy == "file":
        files = tf.data.Dataset.from_tensor_slices(list(reader.files))
        return reader.records(files.shard(num_pipelines, pipeline_id))
    if policy == "data":
        return reader.records().shard(num_pipelines, pipeline_id)
    pipeline = tf.cast(pipeline_id, tf.int64)
    if policy == "hash":
        kept = _keep(
            reader.records(keyed=True),
            lambda key, record: tf.strings.to_hash_bucket_fast(key, num_pipelines) == pipeline,
        )
        return kept.map(lambda key, record: record)
    if policy == "random":
        last = tf.constant(max(reader.num_examples - 1, 0), tf.int64)
        permutation = tf.constant([seed, _RANDOM_SALT], tf.int64)
        kept = _keep(
            reader.records().enumerate(),
            lambda index, record: (
                tf.random.experimental.index_shuffle(index, permutation, last) % num_pipelines
                == pipeline
            ),
        )
        return kept.map(lambda index, record: record)
    raise ConfigError(
        f"Unknown shard_policy {policy!r}. Expected one of: {', '.join(SHARD_POLICIES)}."
    )


def decode(records: tf.data.Dataset, reader) -> tf.data.Dataset:
    """Decodes records into `(features, label)`, in parallel, keeping their order."""
    if reader.decode is None:
        return records
    if reader.batched_decode:
        chunks = records.batch(_DECODE_CHUNK).map(
            reader.decode, num_parallel_calls=tf.data.AUTOTUNE
        )
        return chunks.unbatch()
    return records.map(reader.decode, num_parallel_calls=tf.data.AUTOTUNE)


def sharded_examples(
    reader,
    *,
    policy: str,
    num_pipelines: int,
    pipeline_id: int | tf.Tensor,
    seed: int = 0,
    cache: bool | None = None,
) -> tf.data.Dataset:
    """Pipeline `pipeline_id`'s decoded `(features, label)` examples, in a fixed order.

    Args:
      reader: the split's `SplitReader`.
      policy: a resolved policy.
      num_pipelines: input pipelines sharing the split.
      pipeline_id: this pipeline (an int, or a tensor on a parameter-server worker).
      seed: seeds the `random` policy.
      cache: keep the decoded part in memory; None decides from its size (`CACHE_BYTES`).
    """
    records = shard_records(
        reader, policy=policy, num_pipelines=num_pipelines, pipeline_id=pipeline_id, seed=seed
    )
    examples = decode(records, reader)
    if cache is None:
        cache = fits_in_memory(reader, policy, num_pipelines)
    return examples.cache() if cache else examples
