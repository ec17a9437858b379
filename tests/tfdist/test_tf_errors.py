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


def _in_child(code: str) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh Python process (no TF_CONFIG, TensorFlow quiet)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(env, TF_CPP_MIN_LOG_LEVEL="3"),
        cwd=REPO,
    )


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
    assert tf_errors.label_out_of_range(error) is None and tf_errors.aborted_by_peer(error) is None
    assert tf_errors.tf_reason(error).startswith("bad step")


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("label", [3, -1])
def test_a_sparse_label_outside_the_classes(compiled, label):
    def loss():
        return tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.constant([0, label]), logits=tf.zeros([2, 3])
        )

    error = _raised(tf.function(loss) if compiled else loss)

    assert tf_errors.label_out_of_range(error) == (label, 3)
    assert tf_errors.aborted_by_peer(error) is None and not tf_errors.is_iterator_error(error)


def test_a_collective_aborted_by_a_peer_names_it_and_its_reason():
    # In a child process: aborted collectives stay aborted until the process restarts.
    reason = "labels of y hold 3, outside the 3 classes (0..2); use labels 0..2."
    code = textwrap.dedent(f"""
        import tensorflow as tf
        from tfdist import tf_errors
        from tfdist.distribute.communication import abort_collectives
        abort_collectives(tf_errors.peer_abort_reason("worker:0", {reason!r}))
        try:
            tf.raw_ops.CollectiveReduceV2(
                input=tf.constant([1.0]), group_size=tf.constant(1), group_key=tf.constant(1),
                instance_key=tf.constant(1), ordering_token=[], merge_op="Add", final_op="Id")
        except tf.errors.OpError as error:
            print(type(error).__name__, tf_errors.aborted_by_peer(error))
        """)
    done = _in_child(code)

    assert done.stdout.strip() == f"UnavailableError ('worker:0', {reason!r})", done.stderr[-2000:]


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
        done = _in_child(code)

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


def test_a_published_stop_reason_names_the_peer_and_its_line():
    reason = tf_errors.peer_abort_reason("worker:1", "labels of x hold 3, outside the 3 classes.")
    assert tf_errors.peer_stop_reason(reason) == (
        "worker:1",
        "labels of x hold 3, outside the 3 classes.",
    )
    assert tf_errors.peer_stop_reason("worker:1 is down") is None
