"""Local clusters run in a private network namespace: reachable to each other, not from outside."""

import io
import socket
import subprocess
import sys
import time

import pytest

from launch import plan_local_cluster, plan_local_launch, run_local
from launch.network import Isolation, inside, private_network, unavailable_reason

SERVER = """
import json, os, socket, sys, time
port = int(json.loads(os.environ["TF_CONFIG"])["cluster"]["worker"][0].rpartition(":")[2])
me = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
if me == 0:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(); print("listening", port, flush=True)
    conn, _ = s.accept(); conn.sendall(b"hello"); conn.close(); time.sleep(float(sys.argv[1]))
else:
    for _ in range(100):
        try:
            c = socket.create_connection(("localhost", port), timeout=1); break
        except OSError:
            time.sleep(0.05)
    print("peer says", c.recv(5).decode(), flush=True)
"""

needs_namespaces = pytest.mark.skipif(
    unavailable_reason() is not None, reason=f"no network namespaces here: {unavailable_reason()}"
)


def test_without_isolation_launches_are_unchanged():
    isolation = Isolation(None, "turned off")
    assert inside([], isolation) == []
    assert "NOT isolated (turned off)" in isolation.describe([1234])
    assert "1234" in isolation.describe([1234])
    with private_network(enabled=False) as off:
        assert off.namespace is None


@needs_namespaces
def test_tasks_reach_each_other_but_not_the_host():
    cluster = plan_local_cluster(strategy="multi_worker", num_workers=2)
    port = cluster.ports()[0]
    launches = plan_local_launch(
        cluster=cluster,
        strategy="multi_worker",
        command=[sys.executable, "-c", SERVER, "3"],
        base_env={},
    )
    output = io.StringIO()
    with private_network() as isolation:
        assert isolation.namespace and "private network namespace" in isolation.describe()
        isolated = inside(launches, isolation)
        assert isolated[0].argv[:4] == ("ip", "netns", "exec", isolation.namespace)
        import threading

        result = {}
        thread = threading.Thread(
            target=lambda: result.update(r=run_local(isolated, output=output))
        )
        thread.start()
        deadline = time.time() + 20
        while "listening" not in output.getvalue() and time.time() < deadline:
            time.sleep(0.05)
        with pytest.raises(OSError):  # The host's loopback does not reach the task's port.
            socket.create_connection(("127.0.0.1", port), timeout=1)
        thread.join(30)
    assert result["r"].exit_code == 0, result["r"].summary()
    assert "[worker:1] peer says hello" in output.getvalue()
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert isolation.namespace not in names  # Deleted afterwards.
