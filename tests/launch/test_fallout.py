"""`launch.fallout`: which of a task's lines are TensorFlow's errors about a dead peer.

The lines are a parameter_server chief's, copied from a run in which worker:1 (at
localhost:60429) was SIGKILLed and restarted in place.
"""

import json

from launch import TaskLaunch
from launch.fallout import FalloutFilter, peer_names, says_connection_lost

WORKER_1 = ("/job:worker/replica:0/task:1", ":60429")
COORDINATOR_ERROR = (
    "E1205 17:03:59.499141 140507069888192 cluster_coordinator.py:949] Worker "
    "/job:worker/replica:0/task:1 failed with UnavailableError():Socket closed"
)
REGISTER_ERROR = (
    "E0000 00:00:1796490240.060157    6864 context.cc:873] Failed to register function "
    "remotely due to failed to connect to all addresses; last error: UNKNOWN: "
    "ipv4:127.0.0.1:60429: Failed to connect to remote host: Connection refused"
)
CONTINUATIONS = [
    "Additional GRPC error information from remote target /job:worker/replica:0/task:1 while "
    "calling /tensorflow.eager.EagerService/Enqueue:",
    ':UNKNOWN:Error received from peer  {grpc_status:14, grpc_message:"failed to connect"}',
    "This could happen if the remote target has been disconnected from the client.",
]
# An error record naming the peer's port that says nothing of a lost connection.
LISTENING = "E0000 00:00:1796490240.5    6864 server.cc:1] Cannot use ipv4:127.0.0.1:60429 now"
PROGRESS = "46/46 - 5s - 105ms/step - accuracy: 0.6610 - loss: 1.7344"
RETRACING = (
    "W1205 17:04:02.994603 140510366772096 polymorphic_function.py:157] 5 out of the last 5 "
    "calls to <function MultiDeviceSaver.save> triggered tf.function retracing."
)


def _worker(index, tf_config=None):
    env = {} if tf_config is None else {"TF_CONFIG": json.dumps(tf_config)}
    return TaskLaunch(task_type="worker", index=index, argv=("x",), env=env, is_server=True)


def test_a_peer_is_named_by_its_device_path_and_its_port():
    cluster = {
        "chief": ["localhost:41003"],
        "worker": ["localhost:41000", "localhost:60429"],
        "ps": ["localhost:41002"],
    }
    launch = _worker(1, {"cluster": cluster, "task": {"type": "worker", "index": 1}})

    assert peer_names(launch) == WORKER_1


def test_a_peer_without_a_usable_tf_config_is_named_by_its_device_path():
    assert peer_names(_worker(1)) == ("/job:worker/replica:0/task:1",)
    assert peer_names(_worker(1, {"cluster": "nonsense"})) == ("/job:worker/replica:0/task:1",)


def test_error_records_naming_the_dead_peer_and_their_continuations_are_fallout():
    fallout = FalloutFilter()
    lines = ["Epoch 1/3", COORDINATOR_ERROR, *CONTINUATIONS, REGISTER_ERROR, *CONTINUATIONS]

    marked = [fallout.is_fallout(line, WORKER_1) for line in lines]

    assert marked == [False] + [True] * 4 + [True] * 4


def test_the_tasks_own_lines_are_not_fallout():
    fallout = FalloutFilter()
    lines = [REGISTER_ERROR, PROGRESS, RETRACING, "Traceback (most recent call last):"]

    marked = [fallout.is_fallout(line, WORKER_1) for line in lines]

    assert marked == [True, False, False, False]


def test_continuation_lines_alone_and_records_about_other_peers_are_not_fallout():
    fallout = FalloutFilter()
    other_peer = LISTENING.replace(":60429", ":60430")

    assert not fallout.is_fallout(CONTINUATIONS[2], WORKER_1)
    assert not fallout.is_fallout(other_peer, WORKER_1)
    assert not fallout.is_fallout(CONTINUATIONS[0].replace("task:1", "task:2"), WORKER_1)
    assert not fallout.is_fallout(REGISTER_ERROR, ())  # No peer is down.


def test_a_port_is_not_matched_inside_a_longer_number():
    assert FalloutFilter().is_fallout(LISTENING, WORKER_1)
    assert not FalloutFilter().is_fallout(LISTENING.replace(":60429", ":604291"), WORKER_1)


def test_a_lost_connection_record_is_fallout_while_a_peer_is_dead():
    # Only its continuation line names the peer.
    reset = (
        "E0000 00:00:1796490742.426566    4515 context.cc:911] Failed to remove function "
        "remotely due to recvmsg:Connection reset by peer"
    )

    fallout = FalloutFilter()

    assert [fallout.is_fallout(line, WORKER_1) for line in (reset, *CONTINUATIONS)] == [True] * 4
    assert not FalloutFilter().is_fallout(reset, ())  # No peer is dead.


def test_an_error_record_about_a_lost_connection_says_so():
    assert says_connection_lost(REGISTER_ERROR)
    assert says_connection_lost(COORDINATOR_ERROR)  # "Socket closed".
    assert not says_connection_lost(LISTENING)
    assert not says_connection_lost(CONTINUATIONS[1])  # Not a log record.
    assert not says_connection_lost(RETRACING.replace("retracing", "Connection refused"))
