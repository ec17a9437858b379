"""Tests for launch.tf_config: the TF_CONFIG schema, layouts, JSON both ways, validation."""

import copy
import json
import pickle

import pytest

from launch import (
    CLUSTER_STRATEGIES,
    STRATEGY_LAYOUTS,
    ClusterConfig,
    ClusterSpec,
    LaunchError,
    TaskSpec,
    check_count,
    free_ports,
    parse_tf_config,
    plan_local_cluster,
    tf_config_json,
)
from launch.tf_config import check_layout


def test_multi_worker_layout():
    cluster = plan_local_cluster(strategy="multi_worker", num_workers=2, ports=[2001, 2002])

    assert dict(cluster.jobs) == {"worker": ("localhost:2001", "localhost:2002")}
    assert cluster.tasks() == [("worker", 0), ("worker", 1)]
    assert cluster.as_dict() == {"worker": ["localhost:2001", "localhost:2002"]}
    assert cluster.num_tasks == 2


def test_parameter_server_layout_orders_chief_worker_ps():
    cluster = plan_local_cluster(
        strategy="parameter_server",
        num_workers=2,
        num_ps=1,
        host="127.0.0.1",
        ports=[3001, 3002, 3003, 3004],
    )

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


@pytest.mark.parametrize(
    "n, host, match",
    [
        (-1, "localhost", r"Number of ports \(-1\) must be an integer of at least 0"),
        (1, "192.0.2.1", r"Cannot bind a free port on host '192.0.2.1'.*--host=localhost"),
    ],
)
def test_free_ports_errors(n, host, match):
    with pytest.raises(LaunchError, match=match):
        free_ports(n, host)


@pytest.mark.parametrize("task_type, index", [("chief", 0), ("worker", 1), ("ps", 0)])
def test_tf_config_json_round_trip(task_type, index):
    cluster = plan_local_cluster(
        strategy="parameter_server", num_workers=2, num_ps=1, ports=[1, 2, 3, 4]
    )

    config = json.loads(tf_config_json(cluster, task_type, index))

    assert config == {"cluster": cluster.as_dict(), "task": {"type": task_type, "index": index}}


@pytest.mark.parametrize(
    "task_type, index, match",
    [
        ("ps", 0, r"Task type 'ps' is not a job of the cluster. Expected one of: worker"),
        (
            "worker",
            2,
            r"^Task index 2 is out of range for job 'worker', which has 2 task\(s\): "
            r"pass an index in 0..1.$",
        ),
        ("worker", -1, r"Task index -1 is out of range"),
        ("worker", True, r"Task index True is out of range"),
    ],
)
def test_tf_config_json_rejects_unknown_task(task_type, index, match):
    cluster = plan_local_cluster(strategy="multi_worker", num_workers=2, ports=[1, 2])

    with pytest.raises(LaunchError, match=match):
        tf_config_json(cluster, task_type, index)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(strategy="mirorred", num_workers=2),
            r"^Unknown strategy 'mirorred' for a local cluster. "
            r"Expected one of: multi_worker, parameter_server.$",
        ),
        (
            dict(strategy="multi_worker", num_workers=0),
            r"^num_workers \(0\) must be an integer of at least 1; pass --num_workers=1.$",
        ),
        (dict(strategy="multi_worker", num_workers=2.0), r"num_workers \(2.0\)"),
        (dict(strategy="multi_worker", num_workers=True), r"num_workers \(True\)"),
        (
            dict(strategy="multi_worker", num_workers=1, num_ps=-1),
            r"num_ps \(-1\) must be an integer of at least 0; pass --num_ps=0.",
        ),
        (
            dict(strategy="multi_worker", num_workers=2, num_ps=1),
            r"num_ps \(1\) must be 0 for strategy 'multi_worker'; pass --num_ps=0",
        ),
        (
            dict(strategy="parameter_server", num_workers=2),
            r"^num_ps \(0\) must be at least 1 for strategy 'parameter_server'; pass --num_ps=1.$",
        ),
        (dict(strategy="parameter_server", num_workers=0, num_ps=1), r"num_workers \(0\)"),
        (dict(strategy="multi_worker", num_workers=1, host=""), r"host \(''\) must be"),
        (dict(strategy="multi_worker", num_workers=1, host="a b"), r"host \('a b'\)"),
        (
            dict(strategy="multi_worker", num_workers=2, ports=[2001]),
            r"Got 1 ports \(\[2001\]\) for 2 tasks; pass exactly one port per task",
        ),
        (
            dict(strategy="multi_worker", num_workers=2, ports=[2001, 2001]),
            r"Ports \(\[2001, 2001\]\) must be distinct",
        ),
        (
            dict(strategy="multi_worker", num_workers=1, ports=[70000]),
            r"Port 70000 must be an integer in 1..65535",
        ),
        (dict(strategy="multi_worker", num_workers=1, ports=["2001"]), r"Port '2001'"),
    ],
)
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


@pytest.mark.parametrize(
    "jobs, match",
    [
        ({}, r"Cluster jobs \(\{\}\) must be a non-empty mapping"),
        (["worker"], r"Cluster jobs \(\['worker'\]\) must be a non-empty mapping"),
        (
            {"master": ["h:1"]},
            r"^Unknown job name 'master'. Expected one of: "
            r"chief, worker, ps, evaluator.$",
        ),
        ({"worker": []}, r"Job 'worker' has no tasks"),
        ({"worker": "h:1"}, r"Addresses of job 'worker' \('h:1'\) must be a list"),
        ({"worker": ["h1"]}, r"Address 'h1' of task worker:0 must look like 'host:port'"),
        ({"worker": [":1"]}, r"Address ':1' of task worker:0"),
        ({"worker": ["h:0"]}, r"has port 0; ports must be in 1..65535"),
        ({"worker": [7]}, r"Address 7 of task worker:0 must be a 'host:port' string"),
        ({"chief": ["h:1", "h:2"]}, r"Job 'chief' has 2 tasks; a cluster has at most 1 chief"),
        (
            {"worker": ["h:1"], "ps": ["h:1"]},
            r"Address 'h:1' is used by both worker:0 and ps:0; every task needs its own port.",
        ),
    ],
)
def test_cluster_spec_errors(jobs, match):
    with pytest.raises(LaunchError, match=match):
        ClusterSpec(jobs=jobs)


def test_launch_error_is_a_value_error():
    assert issubclass(LaunchError, ValueError)


def test_strategy_layouts_are_the_jobs_each_strategy_needs():
    assert CLUSTER_STRATEGIES == ("multi_worker", "parameter_server")
    assert STRATEGY_LAYOUTS["parameter_server"] == (("chief", "worker", "ps"),)
    for strategy in CLUSTER_STRATEGIES:  # What plan_local_cluster plans fits its strategy.
        cluster = plan_local_cluster(
            strategy=strategy, num_workers=2, num_ps=1 if strategy == "parameter_server" else 0
        )
        assert tuple(cluster.jobs) in STRATEGY_LAYOUTS[strategy]
    check_layout(ClusterSpec(jobs={"chief": ["h:1"], "worker": ["h:2"]}), "multi_worker", fix="x")


@pytest.mark.parametrize(
    "jobs, strategy, match",
    [
        (
            {"worker": ["h:1"], "ps": ["h:2"]},
            "parameter_server",
            r"^Cluster jobs \(worker, ps\) do not fit strategy 'parameter_server', which needs the "
            r"jobs \{chief, worker, ps\}; FIX.$",
        ),
        (
            {"chief": ["h:1"], "worker": ["h:2"], "ps": ["h:3"]},
            "multi_worker",
            r"which needs the jobs \{worker\} or \{chief, worker\}; FIX.",
        ),
        (
            {"worker": ["h:1"]},
            "mirrored",
            r"^Unknown strategy 'mirrored' for a cluster. Expected one of: multi_worker, "
            r"parameter_server.$",
        ),
    ],
)
def test_check_layout_errors(jobs, strategy, match):
    with pytest.raises(LaunchError, match=match):
        check_layout(ClusterSpec(jobs=jobs), strategy, fix="FIX")


@pytest.mark.parametrize("task_type, index", [("chief", 0), ("worker", 1), ("ps", 0)])
def test_parse_tf_config_is_the_inverse_of_tf_config_json(task_type, index):
    cluster = plan_local_cluster(
        strategy="parameter_server", num_workers=2, num_ps=1, ports=[1, 2, 3, 4]
    )

    config = parse_tf_config(tf_config_json(cluster, task_type, index))

    assert config == ClusterConfig(jobs=cluster.jobs, task=TaskSpec(task_type, index))
    assert config.cluster == cluster and config.task.name == f"{task_type}:{index}"
    assert (config.has_ps, config.num_workers, config.num_ps) == (True, 2, 1)
    assert config.is_chief == (task_type == "chief")
    assert config.strategy == "parameter_server"
    assert parse_tf_config(config.to_json()) == config


def test_specs_pickle_and_copy():
    config = ClusterConfig(jobs={"worker": ["h:1", "h:2"]}, task=TaskSpec("worker", 1))

    assert pickle.loads(pickle.dumps(config)) == config
    assert copy.deepcopy(config.cluster) == config.cluster
    assert pickle.loads(pickle.dumps(config.cluster)).jobs["worker"] == ("h:1", "h:2")


def test_cluster_config_of_a_multi_worker_cluster():
    config = ClusterConfig(jobs={"worker": ["h:2"], "chief": ["h:1"]}, task=TaskSpec("worker", 0))

    assert list(config.jobs) == ["chief", "worker"]
    assert (config.has_ps, config.num_workers, config.num_ps) == (False, 2, 0)
    assert not config.is_chief and config.strategy == "multi_worker"
    assert ClusterConfig(jobs={"worker": ["h:1"]}, task=TaskSpec("worker", 0)).is_chief
    assert parse_tf_config(None) is None and parse_tf_config("  ") is None
    assert parse_tf_config(
        '{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker"}}'
    ).task == TaskSpec("worker", 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(jobs={"worker": ["h:1"]}, task=TaskSpec("ps", 0)),
            r"^Task type 'ps' is not a job of the cluster. Expected one of: worker.$",
        ),
        (
            dict(jobs={"worker": ["h:1"]}, task=("worker", 0)),
            r"task \(\('worker', 0\)\) must be a "
            r"TaskSpec",
        ),
        (
            dict(jobs={"worker": ["h:1"], "ps": ["h:2"]}, task=TaskSpec("ps", 0)),
            r"^A cluster with 'ps' tasks needs a 'chief' \(the coordinator\); add a 'chief' job",
        ),
        (dict(jobs={"worker": ["h:1", "h:1"]}, task=TaskSpec("worker", 0)), r"is used by both"),
    ],
)
def test_cluster_config_errors(kwargs, match):
    with pytest.raises(LaunchError, match=match):
        ClusterConfig(**kwargs)


def test_malformed_tf_config_is_a_launch_error_of_one_line():
    with pytest.raises(
        LaunchError,
        match=r"^TF_CONFIG is malformed: address 'h:1' is used by "
        r"both worker:0 and worker:1; every task needs its "
        r"own port. Expected JSON like \{\"cluster\"",
    ):
        parse_tf_config('{"cluster": {"worker": ["h:1", "h:1"]}, "task": {"type": "worker"}}')
    with pytest.raises(LaunchError, match=r"task type \['x'\] is not a job"):
        parse_tf_config('{"cluster": {"worker": ["h:1"]}, "task": {"type": ["x"]}}')
    with pytest.raises(LaunchError, match=r"^TF_CONFIG is malformed: it is nested too deeply"):
        parse_tf_config("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize(
    "value, minimum, fix, match",
    [
        (0, 1, "", r"^n \(0\) must be an integer of at least 1.$"),
        (True, 0, "", r"^n \(True\) must be an integer"),
        (1.0, 0, "pass --n=1", r"^n \(1.0\) must be an integer of at least 0; pass --n=1.$"),
    ],
)
def test_check_count(value, minimum, fix, match):
    assert check_count("n", 3, minimum, fix=fix) == 3
    with pytest.raises(LaunchError, match=match):
        check_count("n", value, minimum, fix=fix)
