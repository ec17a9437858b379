"""Tests for launch.task_plan.plan_local_launch: per-task argv and env, no processes."""

import json
import os

import pytest

from launch import (
    LaunchError,
    TaskLaunch,
    plan_local_cluster,
    plan_local_launch,
    threads_per_process,
)

COMMAND = ("python", "train.py", "--steps=10")
SERVER = ("python", "server.py")


def _multi_worker(num_workers=2):
    return plan_local_cluster(
        strategy="multi_worker",
        num_workers=num_workers,
        ports=list(range(2001, 2001 + num_workers)),
    )


def _parameter_server(num_workers=2, num_ps=1):
    return plan_local_cluster(
        strategy="parameter_server",
        num_workers=num_workers,
        num_ps=num_ps,
        ports=list(range(3001, 3002 + num_workers + num_ps)),
    )


def test_multi_worker_env_per_task():
    cluster = _multi_worker()

    launches = plan_local_launch(
        cluster=cluster,
        strategy="multi_worker",
        command=COMMAND,
        base_env={"HOME": "/home/me"},
        cpu_count=2,
    )

    assert [launch.name for launch in launches] == ["worker:0", "worker:1"]
    for index, launch in enumerate(launches):
        assert json.loads(launch.env["TF_CONFIG"]) == {
            "cluster": cluster.as_dict(),
            "task": {"type": "worker", "index": index},
        }
        assert dict(launch.env) == {
            "HOME": "/home/me",
            "TF_CONFIG": launch.env["TF_CONFIG"],
            "TF_NUM_INTRAOP_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        assert launch.argv == COMMAND
        assert not launch.is_server


def test_threads_divided_among_compute_tasks():
    launches = plan_local_launch(
        cluster=_multi_worker(), strategy="multi_worker", command=COMMAND, base_env={}, cpu_count=9
    )

    for launch in launches:
        assert launch.env["TF_NUM_INTRAOP_THREADS"] == "4"
        assert "TF_NUM_INTEROP_THREADS" not in launch.env
        assert launch.env["OMP_NUM_THREADS"] == "4"


def test_parameter_server_servers_and_threads():
    launches = plan_local_launch(
        cluster=_parameter_server(),
        strategy="parameter_server",
        command=COMMAND,
        server_command=SERVER,
        base_env={},
        cpu_count=6,
    )

    by_name = {launch.name: launch for launch in launches}
    assert list(by_name) == ["chief:0", "worker:0", "worker:1", "ps:0"]
    assert not by_name["chief:0"].is_server
    assert by_name["chief:0"].argv == COMMAND
    for name in ("worker:0", "worker:1", "ps:0"):
        assert by_name[name].is_server
        assert by_name[name].argv == SERVER
    # 6 CPUs over chief + 2 workers; a ps does little compute.
    for name in ("chief:0", "worker:0", "worker:1"):
        assert by_name[name].env["TF_NUM_INTRAOP_THREADS"] == "2"
    assert by_name["ps:0"].env["TF_NUM_INTRAOP_THREADS"] == "1"
    assert by_name["ps:0"].env["OMP_NUM_THREADS"] == "1"
    assert json.loads(by_name["ps:0"].env["TF_CONFIG"])["task"] == {"type": "ps", "index": 0}


def test_server_command_defaults_to_command():
    launches = plan_local_launch(
        cluster=_parameter_server(),
        strategy="parameter_server",
        command=COMMAND,
        base_env={},
        cpu_count=2,
    )

    assert {launch.argv for launch in launches} == {COMMAND}


def test_user_values_are_kept_but_tf_config_is_replaced():
    base_env = {"TF_NUM_INTRAOP_THREADS": "7", "PYTHONUNBUFFERED": "x", "TF_CONFIG": "{}"}

    launch = plan_local_launch(
        cluster=_multi_worker(),
        strategy="multi_worker",
        command=COMMAND,
        base_env=base_env,
        cpu_count=2,
    )[0]

    assert launch.env["TF_NUM_INTRAOP_THREADS"] == "7"
    assert launch.env["PYTHONUNBUFFERED"] == "x"
    assert launch.env["OMP_NUM_THREADS"] == "1"
    assert json.loads(launch.env["TF_CONFIG"])["task"] == {"type": "worker", "index": 0}


def test_base_env_and_os_environ_untouched():
    base_env = {"A": "1"}
    environ_before = dict(os.environ)

    launches = plan_local_launch(
        cluster=_multi_worker(), strategy="multi_worker", command=list(COMMAND), base_env=base_env
    )

    assert base_env == {"A": "1"}
    assert dict(os.environ) == environ_before
    with pytest.raises(TypeError):
        launches[0].env["A"] = "2"
    assert int(launches[0].env["TF_NUM_INTRAOP_THREADS"]) >= 1


def test_task_launch_name_and_freezing():
    env = {"A": "1"}
    launch = TaskLaunch(task_type="ps", index=3, argv=["x"], env=env, is_server=True)
    env["A"] = "2"

    assert launch.name == "ps:3"
    assert launch.argv == ("x",)
    assert launch.env["A"] == "1"


@pytest.mark.parametrize(
    "cpu_count, num_processes, expected", [(2, 2, 1), (8, 3, 2), (1, 4, 1), (16, 1, 16)]
)
def test_threads_per_process(cpu_count, num_processes, expected):
    assert threads_per_process(cpu_count=cpu_count, num_processes=num_processes) == expected


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(cpu_count=0, num_processes=1), r"cpu_count \(0\) must be an integer of at least 1"),
        (dict(cpu_count=2, num_processes=0), r"num_processes \(0\)"),
    ],
)
def test_threads_per_process_errors(kwargs, match):
    with pytest.raises(LaunchError, match=match):
        threads_per_process(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(strategy="mirrored"),
            r"Unknown strategy 'mirrored' for a local launch. "
            r"Expected one of: multi_worker, parameter_server.",
        ),
        (
            dict(strategy="parameter_server"),
            r"Cluster jobs \(worker\) do not fit strategy 'parameter_server', which needs "
            r"the jobs \{chief, worker, ps\}; plan it with plan_local_cluster",
        ),
        (dict(command=[]), r"command \(\[\]\) must be a non-empty list of strings"),
        (dict(command="python train.py"), r"command \('python train.py'\) must be"),
        (dict(command=["python", 3]), r"command \(\['python', 3\]\)"),
        (dict(server_command=()), r"server_command \(\(\)\) must be"),
        (dict(base_env={"A": 1}), r"base_env must be a mapping of str to str"),
        (dict(cpu_count=0), r"cpu_count \(0\)"),
        (dict(cluster={"worker": ["h:1"]}), r"cluster \(.*\) must be a ClusterSpec"),
    ],
)
def test_plan_local_launch_errors(kwargs, match):
    arguments = dict(
        cluster=_multi_worker(), strategy="multi_worker", command=COMMAND, base_env={}, cpu_count=2
    )
    arguments.update(kwargs)

    with pytest.raises(LaunchError, match=match):
        plan_local_launch(**arguments)
