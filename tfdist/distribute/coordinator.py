"""Results of steps scheduled on parameter-server workers, fetched so a lost worker is survivable.

`ClusterCoordinator` marks a scheduled function's result ready as soon as the function
ran on its worker; its own worker thread then copies the result to the coordinator
inside TensorFlow's failure handling. A `fetch` on the caller's thread that wins that
race copies it itself, outside the handling, and if the worker died in between it
raises `UnavailableError` (or a derived `Cancelled`/`Aborted`) into the training
loop, although the coordinator is already running the function again on a live worker.
`fetch_result` owns that case: it waits for the coordinator (`join`), which returns
once the rerun's result is copied, and fetches that.
"""

from __future__ import annotations

import tensorflow as tf
from absl import logging

from tfdist.tf_errors import is_lost_task_error, names_job


def lost_worker(error: BaseException) -> bool:
    """Whether `error` is a worker task lost mid-copy rather than a failing step.

    TF's own cluster_coordinator (`_is_worker_failure`) treats the same errors, naming
    a worker task, as a worker failure; one naming a ps task is not survivable.
    """
    return names_job(error, "worker") and is_lost_task_error(error)


def fetch_result(coordinator, result):
    """`result.fetch()`; if its worker was lost before the copy, the rerun's result.

    A step that itself failed (a user error, a lost parameter server) still raises: the
    coordinator's `join` raises it, and errors that do not name a worker pass through.
    """
    try:
        return result.fetch()
    except tf.errors.OpError as error:
        if not lost_worker(error):
            raise
        logging.warning(
            "a worker was lost before its step's result reached the coordinator "
            "(%s); waiting for the coordinator to run the step again",
            type(error).__name__,
        )
        coordinator.join()  # TF reruns the function elsewhere and copies its result.
        return result.fetch()
