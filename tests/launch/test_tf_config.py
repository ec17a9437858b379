"""Tests for launch.tf_config: cluster layouts, TF_CONFIG JSON, validation."""

import json

import pytest

from launch import (ClusterSpec, LaunchError, free_ports, plan_local_cluster,
                    tf_config_json)


def test_multi_worker_layout():
    cluster = plan_local_cluster(strategy="multi_worker", num_workers=2, ports=[2001, 2002])

    assert dict(cluster.jobs) == {"worker": ("localhost:2001", "localhost:2002")}
    assert cluster.tasks() == [("worker", 0), ("worker", 1)]
    assert cluster.as_dict() == {"worker": ["localhost:2001", "localhost:2002"]}
    assert cluster.num_tasks == 2


def test_parameter_server_layout_orders_chief_worker_ps():
    cluster = plan_local_cluster(strategy="parameter_server", num_workers=2, num_ps=1,
                                 host="127.0.0.1", ports=[3001, 3002, 3003, 3004])

    assert cluster.as_dict() == {
        "chief": ["127.0.0.1:3001"],
        "worker": ["127.0.0.1:3002", "127.0.0.1:3003"],
        "ps": ["127.0.0.1:3004"],
    }
    assert cluster.tasks() == [("chief", 0), ("worker", 0), ("worker", 1), ("ps", 0)]
    assert cluster.num_tasks == 4


def test_free_ports_are_used_when_none_given():
    cluster = plan_local_cluster(strategy="parameter_server", num_workers=2, num_ps=2)

    addresses = [a for addrs in cluster.jobs.values() for a in addrs]
    ports = {int(address.split(":")[1]) for address in addresses}
    assert len(ports) == 5
    assert all(address.startswith("localhost:") for address in addresses)


def test_free_ports_distinct():
    ports = free_ports(6)

    assert len(set(ports)) == 6
    assert all(1 <= port <= 65535 for port in ports)
    assert free_ports(0) == []


@pytest.mark.parametrize("n, host, match", [
    (-1, "localhost", r"Number of ports \(-1\) must be an integer of at least 0"),
    (1, "192.0.2.1", r"Cannot bind a free port on host '192.0.2.1'.*--host=localhost"),
])
def test_free_ports_errors(n, host, match):
    with pytest.raises(LaunchError, match=match):
        free_ports(n, host)


@pytest.mark.parametrize("task_type, index", [("chief", 0), ("worker", 1), ("ps", 0)])
def test_tf_config_json_round_trip(task_type, index):
    cluster = plan_local_cluster(strategy="parameter_server", num_workers=2, num_ps=1,
                                 ports=[1, 2, 3, 4])

    config = json.loads(tf_config_json(cluster, task_type, index))

    assert config == {"cluster": cluster.as_dict(),
                      "task": {"type": task_type, "index": index}}


@pytest.mark.parametrize("task_type, index, match", [
    ("ps", 0, r"Task type 'ps' is not a job of the cluster. Expected one of: worker"),
    ("worker", 2, r"Task index \(2\) of job 'worker' must be in 0..1"),
    ("worker", -1, r"Task index \(-1\)"),
    ("worker", True, r"Task index \(True\)"),
])
def test_tf_config_json_rejects_unknown_task(task_type, index, match):
    cluster = plan_local_cluster(strategy="multi_worker", num_workers=2, ports=[1, 2])

    with pytest.raises(LaunchError, match=match):
        tf_config_json(cluster, task_type, index)


@pytest.mark.parametrize("kwargs, match", [
    (dict(strategy="mirorred", num_workers=2),
     r"^Unknown strategy 'mirorred' for a local cluster. "
     r"Expected one of: multi_worker, parameter_server.$"),
    (dict(strategy="multi_worker", num_workers=0),
     r"^num_workers \(0\) must be an integer of at least 1; pass --num_workers=1.$"),
    (dict(strategy="multi_worker", num_workers=2.0), r"num_workers \(2.0\)"),
    (dict(strategy="multi_worker", num_workers=True), r"num_workers \(True\)"),
    (dict(strategy="multi_worker", num_workers=1, num_ps=-1),
     r"num_ps \(-1\) must be an integer of at least 0; pass --num_ps=0."),
    (dict(strategy="multi_worker", num_workers=2, num_ps=1),
     r"num_ps \(1\) must be 0 for strategy 'multi_worker'; pass --num_ps=0"),
    (dict(strategy="parameter_server", num_workers=2),
     r"^num_ps \(0\) must be at least 1 for strategy 'parameter_server'; pass --num_ps=1.$"),
    (dict(strategy="parameter_server", num_workers=0, num_ps=1), r"num_workers \(0\)"),
    (dict(strategy="multi_worker", num_workers=1, host=""), r"host \(''\) must be"),
    (dict(strategy="multi_worker", num_workers=1, host="a b"), r"host \('a b'\)"),
    (dict(strategy="multi_worker", num_workers=2, ports=[2001]),
     r"Got 1 ports \(\[2001\]\) for 2 tasks; pass exactly one port per task"),
    (dict(strategy="multi_worker", num_workers=2, ports=[2001, 2001]),
     r"Ports \(\[2001, 2001\]\) must be distinct"),
    (dict(strategy="multi_worker", num_workers=1, ports=[70000]),
     r"Port 70000 must be an integer in 1..65535"),
    (dict(strategy="multi_worker", num_workers=1, ports=["2001"]), r"Port '2001'"),
])
def test_plan_local_cluster_errors(kwargs, match):
    with pytest.raises(LaunchError, match=match):
        plan_local_cluster(**kwargs)


def test_cluster_spec_normalises_order_and_freezes_jobs():
    cluster = ClusterSpec(jobs={"ps": ["h:3"], "worker": ["h:2"], "chief": ["h:1"]})

    assert list(cluster.jobs) == ["chief", "worker", "ps"]
    assert cluster.jobs["worker"] == ("h:2",)
    with pytest.raises(TypeError):
        cluster.jobs["evaluator"] = ("h:4",)
    assert cluster == ClusterSpec(jobs={"chief": ("h:1",), "worker": ("h:2",), "ps": ("h:3",)})
    assert hash(cluster) == hash(ClusterSpec(jobs=dict(cluster.jobs)))


@pytest.mark.parametrize("jobs, match", [
    ({}, r"ClusterSpec jobs \(\{\}\) must be a non-empty mapping"),
    ({"master": ["h:1"]}, r"Unknown job name 'master' in ClusterSpec. Expected one of: "
                          r"chief, worker, ps, evaluator."),
    ({"worker": []}, r"Job 'worker' has no tasks"),
    ({"worker": "h:1"}, r"Addresses of job 'worker' \('h:1'\) must be a list"),
    ({"worker": ["h1"]}, r"Address 'h1' of task worker:0 must look like 'host:port'"),
    ({"worker": [":1"]}, r"Address ':1' of task worker:0"),
    ({"worker": ["h:0"]}, r"has port 0; ports must be in 1..65535"),
    ({"worker": [7]}, r"Address 7 of task worker:0 must be a 'host:port' string"),
    ({"chief": ["h:1", "h:2"]}, r"Job 'chief' has 2 tasks; a cluster has at most 1 chief"),
    ({"worker": ["h:1"], "ps": ["h:1"]},
     r"Address 'h:1' is given to both worker:0 and ps:0"),
])
def test_cluster_spec_errors(jobs, match):
    with pytest.raises(LaunchError, match=match):
        ClusterSpec(jobs=jobs)


def test_launch_error_is_a_value_error():
    assert issubclass(LaunchError, ValueError)
