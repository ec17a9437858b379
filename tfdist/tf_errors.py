"""TensorFlow's errors told apart by their text, where their type does not say enough.

Owns every match on the wording of a TensorFlow error: one named predicate per case,
and `tf_reason`, the one line of an error that a tfdist message quotes. When a
TensorFlow release rewords a message this is the one file to change;
tests/tfdist/test_tf_errors.py produces each case with real TensorFlow where one
process can. What to do about each case belongs to the caller: the strategies
(a gRPC server that did not start), the input pipeline (an iterator's read error, a
shard that ran out), the parameter-server coordinator (a lost worker) and the data
errors of a step (a sparse label outside the classes; a peer's abort that names its cause).
"""

from __future__ import annotations

import re

import tensorflow as tf

# Errors a lost task gives a copy of its result; TF's own cluster_coordinator
# (_is_worker_failure) treats the same ones, naming a worker task, as a worker failure.
_LOST_TASK_ERRORS = (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.AbortedError)
# InvalidArgument ones from a task restarted so fast that a copy reached the new
# process, which never had the tensor.
_RESTARTED_TASK_MESSAGES = (
    "unknown device",
    "primary device is not remote",
    "unable to find the relevant tensor remote_handle",
)
# SparseSoftmaxCrossEntropyWithLogits (CPU) on a label outside [0, classes).
_LABEL_OUT_OF_RANGE = re.compile(
    r"Received a label value of (-?\d+) which is outside the valid range of \[0, (\d+)\)"
)
# What a task that stopped on a data error gives its peers' collectives (`peer_abort`).
PEER_ABORT_PREFIX = "tfdist: "
_PEER_ABORT = re.compile(
    re.escape(PEER_ABORT_PREFIX) + r"(\S+) stopped on a data error: ([^\n\"]*)"
)


def _text(error: BaseException) -> str:
    return str(error)  # An OpError's message, and the original op's trace when it has one.


def tf_reason(error: BaseException) -> str:
    """The line of a TensorFlow error that says what went wrong, without annotations.

    Skips a graph error's "Graph execution error:" and "Detected at node" traceback,
    and drops `{{function_node ...}}`, `[[node ...]]` and `[Op:...]` parts.
    """
    text = getattr(error, "message", None) or str(error)
    lines = [line for line in text.splitlines() if line.strip()]
    reasons = [
        line
        for line in lines
        if not line[0].isspace()
        and not line.startswith(("Graph execution error", "Detected at node"))
    ]
    line = (reasons or lines or [text])[0]
    line = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[\[.*?\]\]", "", line)
    line = re.sub(r"\s*\[Op:[^\]]*\].*$", "", line)
    return re.sub(r"\s+", " ", line).strip(" .")


def is_server_start_failure(error: BaseException) -> bool:
    """Whether `error` is this task's gRPC server failing to start ("Could not start
    gRPC server": its port is taken or its address is not this machine's)."""
    return isinstance(error, tf.errors.UnknownError) and "gRPC server" in _text(error)


def is_iterator_error(error: BaseException) -> bool:
    """Whether `error` was raised by reading a `tf.data` iterator (`IteratorGetNext`),
    eagerly or inside a `tf.function`, rather than by a step's own ops."""
    text = _text(error)
    return "GetNext" in text or "Iterator" in text


def is_infinite_input_exhausted(error: BaseException) -> bool:
    """Whether `error` is a dataset asserted infinite (`assert_cardinality`) that ended:
    "Input dataset was expected to contain an infinite number of elements but contained
    only N elements"."""
    return isinstance(error, tf.errors.FailedPreconditionError) and "infinite" in _text(error)


def names_job(error: BaseException, job: str) -> bool:
    """Whether `error`'s text names a task of `job`, e.g. `/job:worker/replica:0/task:1`."""
    return f"/job:{job}" in _text(error)


def is_lost_task_error(error: BaseException) -> bool:
    """Whether `error` is how a copy from a task that died fails: unavailable, cancelled,
    aborted, or (the task restarted already) an unknown device or remote handle."""
    if isinstance(error, tf.errors.InvalidArgumentError):
        text = _text(error).lower()
        return any(message in text for message in _RESTARTED_TASK_MESSAGES)
    return isinstance(error, _LOST_TASK_ERRORS)


def label_out_of_range(error: BaseException) -> tuple[int, int] | None:
    """`(label, classes)` when `error` is a sparse cross-entropy's label outside `[0, classes)`
    ("Received a label value of 3 which is outside the valid range of [0, 3)"), else None."""
    if not isinstance(error, tf.errors.InvalidArgumentError):
        return None
    found = _LABEL_OUT_OF_RANGE.search(_text(error))
    return (int(found.group(1)), int(found.group(2))) if found else None


def peer_abort_reason(task: str, message: str) -> str:
    """The reason a task gives `abort_collectives` when it stops on a data error."""
    return f"{PEER_ABORT_PREFIX}{task} stopped on a data error: {message}"


def peer_stop_reason(reason: str) -> tuple[str, str] | None:
    """`(task, message)` of a reason made by `peer_abort_reason`, else None."""
    found = _PEER_ABORT.search(reason)
    return (found.group(1), found.group(2).strip()) if found else None


def aborted_by_peer(error: BaseException) -> tuple[str, str] | None:
    """`(task, message)` when `error` is a collective that a peer aborted with
    `peer_abort_reason` ("Collective ops is aborted by: tfdist: worker:0 stopped on a
    data error: ..."), else None."""
    if not isinstance(error, tf.errors.OpError):
        return None
    found = _PEER_ABORT.search(_text(error))
    if not found:
        return None
    return found.group(1), re.sub(r"\s*\[Op:[^\]]*\]$", "", found.group(2)).strip()
