"""Forces the race ``tfdist.distribute.coordinator.fetch_result`` handles, on a real
parameter-server cluster.

Run as the ``parameter_server`` chief by test_scheduled_e2e.py through ``launch.run_local``
(one worker, one ps, the launcher restarting the worker in place):

    python lost_copy_job.py OUT_JSON

A worker is lost after a scheduled step ran on it but before the coordinator copied the
step's result: the worker process is stopped (SIGSTOP) while the step is scheduled, the
result's copy lock is taken so TensorFlow's own coordinator thread cannot copy first
(this reaches into ``RemoteValueImpl``: it is how the race is made certain instead of
rare), the worker runs the step (SIGCONT), is killed (SIGKILL), and the caller fetches.
Done twice: with TensorFlow's plain ``fetch`` (expected to raise, which shows the race was
made) and with ``fetch_result``. Writes what each returned or raised to OUT_JSON.
"""

import json
import os
import signal
import sys
import time

import tensorflow as tf

import tfdist
from tfdist.distribute.coordinator import fetch_result


def worker_pid(cluster):
    """The pid of this cluster's worker:0, found by its TF_CONFIG."""
    address = cluster.jobs["worker"][0]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"TF_CONFIG="):
                config = json.loads(item[len(b"TF_CONFIG=") :])
                if (
                    config["task"] == {"type": "worker", "index": 0}
                    and address in config["cluster"]["worker"]
                ):
                    return int(pid)
    raise RuntimeError(f"no worker process serving {address}")


def lost_before_copy(coordinator, step, cluster):
    """Schedules ``step``; returns its result once the step ran and its worker is dead."""
    pid = worker_pid(cluster)
    os.kill(pid, signal.SIGSTOP)
    result = coordinator.schedule(step)
    lock = result._has_fetched_to_local_lock  # Whoever holds it copies the result.
    lock.acquire()
    os.kill(pid, signal.SIGCONT)
    result._status_available_event.wait()  # The step ran; its result is on the worker.
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    lock.release()
    return result


def main(out_json):
    cluster = tfdist.read_tf_config()
    distribution = tfdist.make_strategy("parameter_server", cluster=cluster)
    coordinator = distribution.coordinator
    with distribution.strategy.scope():
        runs = tf.Variable(0.0)

    @tf.function
    def step():
        runs.assign_add(1.0)
        return tf.constant(7.0)

    report = {"warm_up": float(coordinator.schedule(step).fetch())}
    try:
        report["plain_fetch"] = float(lost_before_copy(coordinator, step, cluster).fetch())
    except tf.errors.OpError as error:
        report["plain_fetch"] = type(error).__name__
    coordinator.join()
    result = lost_before_copy(coordinator, step, cluster)
    report["fetch_result"] = float(fetch_result(coordinator, result))
    report["step_runs"] = float(runs.numpy())
    with open(out_json, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main(sys.argv[1])
