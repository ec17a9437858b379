"""The shared vocabulary of settings and the checks of single values.

Owns the valid names every layer shares (strategies, optimizers, compressions,
precisions, shard policies, outer optimizers, file datasets), `ConfigError`, and the
checks and parsers of one value each (a positive count, a choice among names, a batch
that splits over replicas, `FIRST,LAST` steps, image shapes). Standard library only:
the launcher and the command line use it before TensorFlow starts. The settings objects
built from these checks are in `tfdist.config.loop` and `tfdist.config.job`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TypeVar

T = TypeVar("T")

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "parameter_server")
OPTIMIZERS = ("sgd", "adam", "rmsprop")
COMPRESSIONS = ("none", "fp16", "bf16")
COLLECTIVE_IMPLEMENTATIONS = ("auto", "ring", "nccl")
PRECISIONS = ("none", "mixed_float16", "mixed_bfloat16")
SHARD_POLICIES = ("auto", "file", "data", "hash", "random", "off")
OUTER_OPTIMIZERS = ("none", "sgd", "nesterov")
FILE_DATASETS = ("tfrecord", "csv", "npz", "image_folder")
DEFAULT_CPU_REPLICAS = 2


class ConfigError(ValueError):
    """A user mistake in settings, TF_CONFIG or data; the message is one line with the fix."""


def describe_choices(values: Iterable[str]) -> str:
    return ", ".join(values)


def check_choice(what: str, value: str, choices: Collection[str]) -> str:
    """Returns `value` if it is one of `choices`; raises ConfigError listing them otherwise."""
    if value not in choices:
        raise ConfigError(
            f"Unknown {what} {value!r}. Expected one of: {describe_choices(choices)}."
        )
    return value


def check_positive(what: str, value: T, *, allow_none: bool = False) -> T:
    """Returns `value` if it is a positive number (or None when allowed)."""
    if value is None and allow_none:
        return value
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value > 0
        or value == float("inf")
    ):  # `not > 0` also refuses NaN.
        raise ConfigError(f"{what} ({value!r}) must be a positive number.")
    return value


def nearest_multiples(value: int, divisor: int) -> str:
    """Says the multiples of `divisor` on either side of `value`: "28 or 32"."""
    below = (value // divisor) * divisor
    above = below + divisor
    return f"{below} or {above}" if below > 0 else f"{above}"


def per_replica_batch_size(global_batch_size: int, num_replicas: int) -> int:
    """The batch each replica computes on; the global batch must split evenly."""
    if global_batch_size % num_replicas:
        raise ConfigError(
            f"global_batch_size ({global_batch_size}) must be divisible by the number of "
            f"replicas ({num_replicas}); use {nearest_multiples(global_batch_size, num_replicas)}."
        )
    return global_batch_size // num_replicas


def check_profile_steps(steps: object) -> tuple[int, int] | None:
    """Returns `steps` as `(first, last)` optimizer steps to profile, or None."""
    if steps is None:
        return None
    if (
        not isinstance(steps, (tuple, list))
        or len(steps) != 2
        or any(isinstance(s, bool) or not isinstance(s, int) for s in steps)
        or not 1 <= steps[0] <= steps[1]
    ):
        raise ConfigError(
            f"profile_steps ({steps!r}) must be two optimizer steps FIRST,LAST with "
            "1 <= FIRST <= LAST, e.g. --profile_steps=10,20."
        )
    return tuple(steps)


def parse_profile_steps(text: str | None) -> tuple[int, int] | None:
    """`"10,20"` → `(10, 20)`; None or empty → None (the `--profile_steps` flag)."""
    if text is None or not text.strip():
        return None
    try:
        steps = tuple(int(part) for part in text.split(","))
    except ValueError:
        steps = None
    return check_profile_steps(steps if steps and len(steps) == 2 else text)


def check_image_shape(shape: object) -> tuple[int, int, int] | None:
    """Returns `shape` if it is None or `(height, width, channels)` of positive ints."""
    if shape is None:
        return None
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 3
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape)
    ):
        raise ConfigError(
            f"image_shape ({shape!r}) must be HEIGHT, WIDTH and CHANNELS, e.g. "
            "--image_shape=32x32x3."
        )
    return tuple(shape)


def parse_image_shape(text: str | None) -> tuple[int, int, int] | None:
    """`"32x32x3"` → `(32, 32, 3)`; None or empty → None (`--image_shape`)."""
    if text is None or not text.strip():
        return None
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        return check_image_shape(text)  # Raises, naming what was typed.
    return shape


def check_image_size(size: object) -> tuple[int, int] | None:
    """Returns `size` if it is None or `(height, width)` of positive ints."""
    if size is None:
        return None
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size)
    ):
        raise ConfigError(
            f"image_size ({size!r}) must be HEIGHT and WIDTH in pixels, e.g. --image_size=32x32."
        )
    return tuple(size)


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    """`"32x48"` → `(32, 48)`, `"32"` → `(32, 32)`; None or empty → None."""
    if text is None or not text.strip():
        return None
    parts = text.lower().split("x")
    try:
        size = tuple(int(part) for part in parts)
    except ValueError:
        size = None
    if size is not None and len(size) == 1:
        size = size * 2
    return check_image_size(size if size else text)
