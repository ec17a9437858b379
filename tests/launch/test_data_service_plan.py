"""Planning the tf.data service tasks of a local launch (no processes)."""

import pytest

from launch import LaunchError
from launch.data_service import plan_data_service


def test_dispatcher_and_workers_are_server_tasks():
    plan = plan_data_service(
        command=["py", "-m", "tfdist.data_service"],
        num_workers=2,
        base_env={"TF_CONFIG": "{}", "PATH": "/bin"},
        port=6000,
    )
    assert plan.address == "grpc://localhost:6000"
    assert plan.trainer_args == ("--data_service_address=grpc://localhost:6000",)
    assert [launch.name for launch in plan.launches] == [
        "dispatcher:0",
        "data_worker:0",
        "data_worker:1",
    ]
    assert all(launch.is_server for launch in plan.launches)
    assert plan.launches[0].argv == ("py", "-m", "tfdist.data_service", "dispatcher", "--port=6000")
    assert plan.launches[1].argv[-2:] == ("--dispatcher_address=localhost:6000", "--host=localhost")
    env = plan.launches[1].env
    assert "TF_CONFIG" not in env and env["PATH"] == "/bin"
    assert env["TF_NUM_INTRAOP_THREADS"] == "1" and env["CUDA_VISIBLE_DEVICES"] == ""


def test_free_port_and_bad_arguments():
    plan = plan_data_service(command=["py"], num_workers=1, base_env={})
    assert int(plan.address.rsplit(":", 1)[1]) > 0
    with pytest.raises(LaunchError, match=r"num_workers \(0\) of the data service"):
        plan_data_service(command=["py"], num_workers=0, base_env={})
