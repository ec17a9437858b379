"""Each TensorFlow error case tfdist tells apart, produced with real TensorFlow."""

import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

from tfdist import tf_errors

REPO = pathlib.Path(__file__).resolve().parents[2]
_WORKER = "/job:worker/replica:0/task:1/device:CPU:0"


def _raised(function):
    try:
        function()
    except Exception as error:
        return error
    pytest.fail("expected TensorFlow to raise")


def _infinite_that_ends():
    return tf.data.Dataset.range(3).apply(
        tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY)
    )


def _read_all(dataset, *, compiled):
    iterator = iter(dataset)
    step = tf.function(lambda: next(iterator)) if compiled else (lambda: next(iterator))
    for _ in range(10):
        step()


@pytest.mark.parametrize("compiled", [False, True])
def test_an_infinite_input_that_ends_is_an_iterator_error(compiled):
    error = _raised(lambda: _read_all(_infinite_that_ends(), compiled=compiled))

    assert tf_errors.is_infinite_input_exhausted(error) and tf_errors.is_iterator_error(error)
    assert tf_errors.tf_reason(error) == (
        "Input dataset was expected to contain an infinite "
        "number of elements but contained only 3 elements"
    )


@pytest.mark.parametrize("compiled", [False, True])
def test_a_corrupt_record_is_an_iterator_error(tmp_path, compiled):
    path = tmp_path / "bad.tfrecord"
    path.write_bytes(b"garbage" * 10)

    error = _raised(lambda: _read_all(tf.data.TFRecordDataset(str(path)), compiled=compiled))

    assert isinstance(error, tf.errors.DataLossError) and tf_errors.is_iterator_error(error)
    assert not tf_errors.is_infinite_input_exhausted(error)
    assert tf_errors.tf_reason(error) == "corrupted record at 0 (Is this even a TFRecord file?)"


def test_an_error_of_a_step_itself_is_none_of_these():
    error = _raised(lambda: tf.debugging.assert_equal(1, 2, message="bad step"))

    assert not tf_errors.is_iterator_error(error) and not tf_errors.is_server_start_failure(error)
    assert not tf_errors.is_infinite_input_exhausted(error)
    assert tf_errors.tf_reason(error).startswith("bad step")


def test_a_server_on_a_taken_port_fails_to_start():
    # In a child process: a tf.distribute.Server would change this process's TF context.
    with socket.socket() as holder:
        holder.bind(("", 0))
        holder.listen()
        code = textwrap.dedent(f"""
            import tensorflow as tf
            from tfdist import tf_errors
            cluster = tf.train.ClusterSpec({{"worker": ["localhost:{holder.getsockname()[1]}"]}})
            try:
                tf.distribute.Server(cluster, job_name="worker", task_index=0)
            except tf.errors.OpError as error:
                print(tf_errors.is_server_start_failure(error), tf_errors.tf_reason(error))
            """)
        env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(env, TF_CPP_MIN_LOG_LEVEL="3"),
            cwd=REPO,
        )

    assert done.stdout.strip() == "True Could not start gRPC server", done.stderr[-2000:]


@pytest.mark.parametrize(
    "error, lost",
    [
        (tf.errors.UnavailableError(None, None, f"Socket closed from {_WORKER}"), True),
        (tf.errors.CancelledError(None, None, f"{_WORKER}: cancelled"), True),
        (tf.errors.AbortedError(None, None, f"{_WORKER}: aborted"), True),
        (tf.errors.InvalidArgumentError(None, None, f"Unknown device {_WORKER}"), True),
        (
            tf.errors.InvalidArgumentError(
                None, None, f"Unable to find the relevant tensor remote_handle on {_WORKER}"
            ),
            True,
        ),
        (tf.errors.InvalidArgumentError(None, None, f"Incompatible shapes on {_WORKER}"), False),
        (tf.errors.NotFoundError(None, None, f"{_WORKER}: not found"), False),
    ],
)
def test_lost_task_errors(error, lost):
    assert tf_errors.is_lost_task_error(error) is lost
    assert tf_errors.names_job(error, "worker") and not tf_errors.names_job(error, "ps")


def test_tf_reason_of_plain_exceptions():
    assert tf_errors.tf_reason(ValueError("first line.\nsecond")) == "first line"
    assert tf_errors.tf_reason(ValueError("")) == ""
