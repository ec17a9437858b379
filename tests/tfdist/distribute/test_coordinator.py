"""fetch_result: a result whose worker was lost before its copy is fetched from the rerun.

The race itself (a worker SIGKILLed between its step and the coordinator's copy) is
exercised by real processes in tests/e2e/test_faults_e2e.py; here the decision: which
errors mean "wait for the coordinator's rerun" and which pass straight to the caller.
"""

import pytest
import tensorflow as tf

from tfdist.distribute.coordinator import fetch_result, lost_worker

LOST = tf.errors.UnavailableError(
    None, None, "failed to connect to all addresses; remote target /job:worker/replica:0/task:1"
)


class _Result:
    """A scheduled function's result whose first fetches raise the given errors."""

    def __init__(self, *errors):
        self.errors = list(errors)

    def fetch(self):
        if self.errors:
            raise self.errors.pop(0)
        return 7.0


class _Coordinator:
    def __init__(self, error=None):
        self.joins, self.error = 0, error

    def join(self):
        self.joins += 1
        if self.error:
            raise self.error


def test_a_result_fetches_without_joining():
    coordinator = _Coordinator()
    assert fetch_result(coordinator, _Result()) == 7.0 and coordinator.joins == 0


@pytest.mark.parametrize(
    "error",
    [
        LOST,
        tf.errors.CancelledError(
            None, None, "/job:worker/replica:0/task:0 EagerClusterFunctionLibraryRuntime::Run"
        ),
        tf.errors.AbortedError(None, None, "task /job:worker/replica:0/task:1 restarted"),
        tf.errors.InvalidArgumentError(  # The copy reached the worker's restarted process.
            None,
            None,
            "Unable to find the relevant tensor remote_handle: Op ID: 12, Output "
            "num: 0 on /job:worker/replica:0/task:1",
        ),
    ],
)
def test_a_worker_lost_before_the_copy_waits_for_the_rerun(error):
    coordinator = _Coordinator()
    assert lost_worker(error)
    assert fetch_result(coordinator, _Result(error)) == 7.0 and coordinator.joins == 1


@pytest.mark.parametrize(
    "error",
    [
        tf.errors.InvalidArgumentError(None, None, "labels out of range on /job:worker/task:0"),
        tf.errors.UnavailableError(None, None, "remote target /job:ps/replica:0/task:0"),
    ],
)
def test_a_failing_step_or_a_lost_parameter_server_is_raised_at_once(error):
    coordinator = _Coordinator()
    assert not lost_worker(error)
    with pytest.raises(type(error)):
        fetch_result(coordinator, _Result(error))
    assert coordinator.joins == 0


def test_an_error_the_rerun_reports_is_raised_by_join():
    failed = tf.errors.InvalidArgumentError(None, None, "the rerun failed")
    with pytest.raises(tf.errors.InvalidArgumentError, match="the rerun failed"):
        fetch_result(_Coordinator(error=failed), _Result(LOST))
