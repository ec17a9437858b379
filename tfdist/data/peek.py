"""Reading a user's dataset's first element without changing what later passes read.

A first-batch peek is a partial read. Through a `.cache()` that is not harmless: TensorFlow
can complete the cache with the elements the peek had read when the peek's iterator is
torn down, and every later pass then reads those alone (a 10-batch `map().cache()` test
set peeked and then evaluated gave 1 batch in about 1 run in 20 on a loaded machine, and
an OutOfRangeError where the number of steps was planned). So a pipeline with a cache in it
is not peeked: its checks go by its `element_spec`, as Keras' fit goes by nothing more.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf


def has_cache(dataset: tf.data.Dataset) -> bool:
    """Whether a `.cache()` is anywhere upstream in `dataset`'s pipeline."""
    pending, seen = [dataset], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if "Cache" in type(current).__name__:
            return True
        try:
            pending.extend(current._inputs())
        except (AttributeError, NotImplementedError):
            return True  # A pipeline that does not say what it reads: assume the worst.
    return False


def first_element(dataset: tf.data.Dataset) -> tuple[bool, Any]:
    """`(read, element)`: the first element (None when empty), or `(False, None)` when
    reading it could change what later passes over `dataset` read (`has_cache`)."""
    if has_cache(dataset):
        return False, None
    return True, next(iter(dataset.take(1)), None)
