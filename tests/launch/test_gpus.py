"""Tests for launch.gpus and GPU placement in plan_local_launch: fake GPU ids, no GPU."""

import json
import sys

import pytest

from launch import LaunchError, assign_gpus, plan_local_cluster, plan_local_launch, visible_gpu_ids
from launch.__main__ import main
from launch.gpus import parse_cuda_visible_devices, parse_nvidia_smi_list

PY = sys.executable
NVIDIA_SMI_L = """GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-6f5a4c1e-aaaa-bbbb-cccc-000000000000)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-6f5a4c1e-aaaa-bbbb-cccc-000000000001)
  MIG 1g.10gb     Device  0: (UUID: MIG-11111111-2222-3333-4444-555555555555)
GPU 2: NVIDIA H100 80GB HBM3 (UUID: GPU-6f5a4c1e-aaaa-bbbb-cccc-000000000002)
"""


def test_parse_nvidia_smi_list_counts_gpus_not_mig_devices():
    assert parse_nvidia_smi_list(NVIDIA_SMI_L) == ("0", "1", "2")
    assert parse_nvidia_smi_list("") == ()


@pytest.mark.parametrize(
    "value, expected",
    [
        ("0,1", ("0", "1")),
        (" 2 , 3 ", ("2", "3")),
        ("", ()),
        ("-1", ()),
        ("0,-1,1", ("0",)),
        ("GPU-abc,GPU-def", ("GPU-abc", "GPU-def")),
    ],
)
def test_parse_cuda_visible_devices_follows_cuda(value, expected):
    assert parse_cuda_visible_devices(value) == expected


def test_visible_gpu_ids_prefers_cuda_visible_devices():
    def no_call():
        raise AssertionError("nvidia-smi must not run when CUDA_VISIBLE_DEVICES is set")

    assert visible_gpu_ids(environ={"CUDA_VISIBLE_DEVICES": "2,3"}, nvidia_smi=no_call) == (
        "2",
        "3",
    )
    assert visible_gpu_ids(environ={"CUDA_VISIBLE_DEVICES": ""}, nvidia_smi=no_call) == ()


def test_visible_gpu_ids_from_nvidia_smi_or_none():
    assert visible_gpu_ids(environ={}, nvidia_smi=lambda: NVIDIA_SMI_L) == ("0", "1", "2")
    assert visible_gpu_ids(environ={}, nvidia_smi=lambda: None) == ()


def test_multi_worker_one_gpu_each():
    tasks = [("worker", 0), ("worker", 1)]

    assert assign_gpus(
        strategy="multi_worker", tasks=tasks, gpu_ids=["0", "1", "2"], gpus_per_worker=1
    ) == {("worker", 0): "0", ("worker", 1): "1"}
    assert assign_gpus(
        strategy="multi_worker", tasks=tasks, gpu_ids=["4", "5", "6", "7"], gpus_per_worker=2
    ) == {("worker", 0): "4,5", ("worker", 1): "6,7"}


def test_multi_worker_without_gpus_per_worker_leaves_env():
    assert assign_gpus(strategy="multi_worker", tasks=[("worker", 0)], gpu_ids=["0"]) == {}
    assert assign_gpus(strategy="multi_worker", tasks=[("worker", 0)], gpu_ids=None) == {}


def test_parameter_server_ps_and_chief_on_cpu_workers_on_gpus():
    tasks = [("chief", 0), ("worker", 0), ("worker", 1), ("ps", 0)]

    assert assign_gpus(
        strategy="parameter_server", tasks=tasks, gpu_ids=["0", "1"], gpus_per_worker=1
    ) == {("chief", 0): "", ("worker", 0): "0", ("worker", 1): "1", ("ps", 0): ""}
    # GPUs present but not divided: the ps and chief still leave them to the workers.
    assert assign_gpus(strategy="parameter_server", tasks=tasks, gpu_ids=["0", "1"]) == {
        ("chief", 0): "",
        ("ps", 0): "",
    }
    # No GPU: nothing to hide.
    assert assign_gpus(strategy="parameter_server", tasks=tasks, gpu_ids=[]) == {}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(gpu_ids=["0"], gpus_per_worker=1),
            r"gpus_per_worker \(1\) for 2 worker task\(s\) needs 2 GPUs, but the GPUs visible are "
            r"1 \(0\); pass a smaller --gpus_per_worker or --num_workers",
        ),
        (dict(gpu_ids=[], gpus_per_worker=1), r"GPUs visible are none; .*--gpus_per_worker=0"),
        (dict(gpu_ids=None, gpus_per_worker=1), r"needs the machine's GPU ids; pass gpu_ids="),
        (dict(gpu_ids=["0"], gpus_per_worker=-1), r"gpus_per_worker \(-1\) must be an integer"),
        (dict(gpu_ids=["0"], gpus_per_worker=True), r"gpus_per_worker \(True\) must be"),
    ],
)
def test_assign_gpus_errors(kwargs, match):
    with pytest.raises(LaunchError, match=match):
        assign_gpus(strategy="multi_worker", tasks=[("worker", 0), ("worker", 1)], **kwargs)


def test_plan_local_launch_sets_cuda_visible_devices_per_task():
    cluster = plan_local_cluster(
        strategy="parameter_server", num_workers=2, num_ps=1, ports=[3001, 3002, 3003, 3004]
    )

    launches = plan_local_launch(
        cluster=cluster,
        strategy="parameter_server",
        command=["python", "t.py"],
        base_env={"CUDA_VISIBLE_DEVICES": "3,5"},
        cpu_count=2,
        gpus_per_worker=1,
        gpu_ids=["3", "5"],
    )

    assert {launch.name: launch.env["CUDA_VISIBLE_DEVICES"] for launch in launches} == {
        "chief:0": "",
        "worker:0": "3",
        "worker:1": "5",
        "ps:0": "",
    }


def test_plan_local_launch_without_gpus_keeps_env_unchanged():
    cluster = plan_local_cluster(strategy="multi_worker", num_workers=2, ports=[2001, 2002])

    launches = plan_local_launch(
        cluster=cluster,
        strategy="multi_worker",
        command=["x"],
        base_env={},
        cpu_count=2,
        gpu_ids=[],
    )

    assert all("CUDA_VISIBLE_DEVICES" not in launch.env for launch in launches)


def test_plan_local_launch_subset_of_tasks_divides_threads_among_them():
    cluster = plan_local_cluster(
        strategy="multi_worker", num_workers=4, ports=[2001, 2002, 2003, 2004]
    )

    launches = plan_local_launch(
        cluster=cluster,
        strategy="multi_worker",
        command=["x"],
        base_env={},
        cpu_count=8,
        tasks=[("worker", 3), ("worker", 2)],
        gpus_per_worker=1,
        gpu_ids=["0", "1"],
    )

    assert [launch.name for launch in launches] == ["worker:2", "worker:3"]
    assert [launch.env["TF_NUM_INTRAOP_THREADS"] for launch in launches] == ["4", "4"]
    assert [launch.env["CUDA_VISIBLE_DEVICES"] for launch in launches] == ["0", "1"]
    assert json.loads(launches[1].env["TF_CONFIG"])["cluster"] == cluster.as_dict()


def test_plan_local_launch_rejects_tasks_outside_the_cluster():
    cluster = plan_local_cluster(strategy="multi_worker", num_workers=1, ports=[2001])

    with pytest.raises(LaunchError, match=r"tasks \(\[\('ps', 0\)\]\) must be distinct"):
        plan_local_launch(
            cluster=cluster, strategy="multi_worker", command=["x"], base_env={}, tasks=[("ps", 0)]
        )


def test_cli_gives_each_worker_one_fake_gpu(capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "6,7")
    code = (
        "import json, os; print(json.loads(os.environ['TF_CONFIG'])['task']['index'], "
        "'gpu', os.environ['CUDA_VISIBLE_DEVICES'])"
    )

    assert (
        main(
            [
                "--strategy=multi_worker",
                "--num_workers=2",
                "--gpus_per_worker=1",
                "--",
                PY,
                "-c",
                code,
            ]
        )
        == 0
    )

    captured = capsys.readouterr()
    assert "[worker:0] 0 gpu 6" in captured.out
    assert "[worker:1] 1 gpu 7" in captured.out
    assert "CUDA_VISIBLE_DEVICES: worker:0=6, worker:1=7" in captured.err


def test_cli_too_few_gpus_is_a_one_line_error(capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")

    assert (
        main(
            [
                "--strategy=multi_worker",
                "--num_workers=2",
                "--gpus_per_worker=1",
                "--",
                PY,
                "-c",
                "pass",
            ]
        )
        == 2
    )

    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("launch: error: gpus_per_worker (1) for 2 worker task(s) needs 2 GPUs")
