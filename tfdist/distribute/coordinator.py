"""Results of steps scheduled on parameter-server workers, fetched so a lost worker is survivable.

``ClusterCoordinator`` marks a scheduled function's result ready as soon as the function
ran on its worker; its own worker thread then copies the result to the coordinator
inside TensorFlow's failure handling. A ``fetch`` on the caller's thread that wins that
race copies it itself, outside the handling, and if the worker died in between it
raises ``UnavailableError`` (or a derived ``Cancelled``/``Aborted``) into the training
loop, although the coordinator is already running the function again on a live worker.
``fetch_result`` owns that case: it waits for the coordinator (``join``), which returns
once the rerun's result is copied, and fetches that.
"""

from __future__ import annotations

from absl import logging
import tensorflow as tf

# Errors a lost worker gives a coordinator-side copy of its result; TF's own
# cluster_coordinator (_is_worker_failure) treats the same ones, naming a worker task, as
# a worker failure. The InvalidArgument ones come from a worker restarted so fast that the
# copy reached the new process, which never had the result.
_LOST_WORKER_ERRORS = (tf.errors.UnavailableError, tf.errors.CancelledError,
                       tf.errors.AbortedError)
_RESTARTED_WORKER_MESSAGES = ("unknown device", "Primary device is not remote",
                              "Unable to find the relevant tensor remote_handle")


def lost_worker(error: BaseException) -> bool:
    """Whether ``error`` is a worker task lost mid-copy rather than a failing step."""
    if "/job:worker" not in str(error):
        return False
    if isinstance(error, tf.errors.InvalidArgumentError):
        return any(message.lower() in str(error).lower()
                   for message in _RESTARTED_WORKER_MESSAGES)
    return isinstance(error, _LOST_WORKER_ERRORS)


def fetch_result(coordinator, result):
    """``result.fetch()``; if its worker was lost before the copy, the rerun's result.

    A step that itself failed (a user error, a lost parameter server) still raises: the
    coordinator's ``join`` raises it, and errors that do not name a worker pass through.
    """
    try:
        return result.fetch()
    except tf.errors.OpError as error:
        if not lost_worker(error):
            raise
        logging.warning("a worker was lost before its step's result reached the coordinator "
                        "(%s); waiting for the coordinator to run the step again",
                        type(error).__name__)
        coordinator.join()  # TF reruns the function elsewhere and copies its result.
        return result.fetch()
