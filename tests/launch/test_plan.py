"""Tests for launch.plan: one LaunchSpec in, the cluster, each task and the start-up line out.

Nothing is spawned: `plan_launch` only prepares (as Accelerate's prepare/spawn split).
"""

import json
import os
import sys

import pytest

from launch import (
    LaunchError,
    LaunchSpec,
    TaskLaunch,
    plan_launch,
    plan_local_cluster,
    tfdist_server_command,
)
from launch.plan import is_loopback

COMMAND = ("python", "my_train.py")
SERVER = tfdist_server_command()


def _plan(**kwargs):
    arguments = dict(
        strategy="multi_worker",
        command=COMMAND,
        num_workers=2,
        ports=[2001, 2002],
        base_env={"HOME": "/h"},
        cpu_count=2,
    )
    arguments.update(kwargs)
    return plan_launch(LaunchSpec(**arguments))


def test_multi_worker_plan():
    plan = _plan()

    assert plan.cluster.as_dict() == {"worker": ["localhost:2001", "localhost:2002"]}
    assert [launch.name for launch in plan.launches] == ["worker:0", "worker:1"]
    assert all(launch.argv == COMMAND and not launch.is_server for launch in plan.launches)
    assert json.loads(plan.launches[1].env["TF_CONFIG"])["task"] == {"type": "worker", "index": 1}
    assert plan.whole_cluster and plan.isolate_network
    assert plan.description == (
        "starting multi_worker cluster: worker:0 at localhost:2001, worker:1 at "
        "localhost:2002; compute tasks get TF_NUM_INTRAOP_THREADS=1, OMP_NUM_THREADS=1"
    )


def test_parameter_server_runs_the_command_on_the_chief_and_servers_elsewhere():
    plan = _plan(
        strategy="parameter_server",
        num_ps=1,
        ports=[1, 2, 3, 4],
        server_command=SERVER,
        cpu_count=6,
    )

    argv = {launch.name: launch.argv for launch in plan.launches}
    assert argv == {"chief:0": COMMAND, "worker:0": SERVER, "worker:1": SERVER, "ps:0": SERVER}
    assert SERVER == (sys.executable, "-m", "tfdist.server")
    assert [launch.is_server for launch in plan.launches] == [False, True, True, True]
    assert (
        f"; servers run {sys.executable} -m tfdist.server; compute tasks get "
        "TF_NUM_INTRAOP_THREADS=2, OMP_NUM_THREADS=2"
    ) in plan.description


def test_without_a_server_command_every_task_runs_the_command():
    plan = _plan(strategy="parameter_server", num_ps=1, ports=[1, 2, 3, 4])

    assert {launch.argv for launch in plan.launches} == {COMMAND}
    assert "servers run" not in plan.description


def test_gpus_are_assigned_and_described():
    plan = _plan(
        strategy="parameter_server",
        num_ps=1,
        ports=[1, 2, 3, 4],
        gpus_per_worker=1,
        gpu_ids=("0", "1"),
    )

    devices = {launch.name: launch.env["CUDA_VISIBLE_DEVICES"] for launch in plan.launches}
    assert devices == {"chief:0": "", "worker:0": "0", "worker:1": "1", "ps:0": ""}
    assert plan.description.endswith(
        "; CUDA_VISIBLE_DEVICES: chief:0=CPU, worker:0=0, worker:1=1, ps:0=CPU"
    )


def test_too_few_gpus_fail_before_anything_starts():
    with pytest.raises(
        LaunchError,
        match=r"gpus_per_worker \(1\) for 2 worker task\(s\) needs "
        r"2 GPUs, but the GPUs visible are 1 \(0\)",
    ):
        _plan(gpus_per_worker=1, gpu_ids=("0",))


@pytest.mark.parametrize(
    "kwargs, isolated",
    [
        (dict(), True),
        (dict(host="127.0.0.1"), True),
        (dict(host="node7"), False),
        (dict(isolate_network=False), False),
    ],
)
def test_only_a_whole_loopback_cluster_is_isolated(kwargs, isolated):
    assert _plan(**kwargs).isolate_network is isolated


def test_is_loopback():
    assert [
        is_loopback(h) for h in ("localhost", "127.0.0.2", "::1", "[::1]", "10.0.0.1", "node1")
    ] == [True, True, True, True, False, False]


def test_part_of_a_cluster_planned_elsewhere():
    cluster = plan_local_cluster(
        strategy="parameter_server", num_workers=2, num_ps=1, host="a", ports=[1, 2, 3, 4]
    )

    plan = _plan(
        strategy="parameter_server",
        cluster=cluster,
        tasks=[["worker", 1], ("ps", 0)],
        ports=None,
        num_workers=9,
    )

    assert plan.cluster == cluster
    assert [launch.name for launch in plan.launches] == ["worker:1", "ps:0"]
    # Only servers here, no chief to wait for: they run as ordinary tasks until stopped.
    assert not any(launch.is_server for launch in plan.launches)
    assert not plan.whole_cluster and not plan.isolate_network
    assert plan.description.startswith(
        "starting worker:1 at a:3, ps:0 at a:4 of a parameter_server cluster of 4 tasks; "
    )


def test_extra_tasks_start_first_and_are_named():
    service = TaskLaunch(task_type="dispatcher", index=0, argv=["d"], env={}, is_server=True)

    plan = _plan(extra_tasks=[service])

    assert [launch.name for launch in plan.launches] == ["dispatcher:0", "worker:0", "worker:1"]
    assert plan.description.startswith(
        "starting multi_worker cluster: worker:0 at "
        "localhost:2001, worker:1 at localhost:2002; also "
        "dispatcher:0; "
    )


def test_spec_is_frozen_and_planning_touches_no_environment():
    base_env = {"A": "1"}
    environ = dict(os.environ)
    spec = LaunchSpec(
        strategy="multi_worker", command=list(COMMAND), base_env=base_env, ports=[2001]
    )
    base_env["A"] = "2"

    plan = plan_launch(spec)

    assert spec.command == COMMAND and spec.ports == (2001,) and spec.base_env["A"] == "1"
    with pytest.raises(TypeError):
        spec.base_env["B"] = "x"
    assert plan.launches[0].env["A"] == "1" and plan.spec is spec
    assert dict(os.environ) == environ
    assert plan_launch(spec) == plan  # Same spec with given ports: same plan.


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(strategy="mirrored"),
            r"^Unknown strategy 'mirrored' for a local cluster. "
            r"Expected one of: multi_worker, parameter_server.$",
        ),
        (
            dict(strategy="parameter_server", ports=[1, 2, 3]),
            r"^num_ps \(0\) must be at least 1 for strategy 'parameter_server'; pass --num_ps=1.$",
        ),
        (dict(num_workers=0), r"num_workers \(0\) must be an integer of at least 1"),
        (dict(command=[]), r"command \(\(\)\) must be a non-empty list of strings"),
        (dict(base_env=None), r"base_env must be a mapping of str to str"),
        (dict(cluster={"worker": ["h:1"]}), r"cluster \(.*\) must be a ClusterSpec or None"),
        (
            dict(
                strategy="parameter_server",
                cluster=plan_local_cluster(strategy="multi_worker", num_workers=1, ports=[1]),
            ),
            r"Cluster jobs \(worker\) do not fit strategy 'parameter_server', which needs the jobs "
            r"\{chief, worker, ps\}; fix the cluster spec or the strategy",
        ),
        (dict(extra_tasks=["python"]), r"extra_tasks \(\('python',\)\) must be TaskLaunch"),
        (dict(tasks=[("ps", 0)]), r"tasks \(.*\) must be distinct \(task_type, index\) pairs"),
    ],
)
def test_plan_errors_are_one_line(kwargs, match):
    with pytest.raises(LaunchError, match=match) as caught:
        _plan(**kwargs)
    assert "\n" not in str(caught.value)


def test_plan_launch_needs_a_spec():
    with pytest.raises(LaunchError, match=r"spec \(\{\}\) must be a LaunchSpec"):
        plan_launch({})
