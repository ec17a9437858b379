"""The GPU check skips cleanly without a GPU; its log parsing and verdicts on sample output."""

import os
import pathlib
import shutil
import subprocess
import sys

from gpu_check import parse_devices, plan_runs, problems_of

SCRIPT = pathlib.Path(__file__).resolve().parent / "gpu_check.sh"
BASH = shutil.which("bash")


def _path_without_nvidia_smi() -> str:
    return os.pathsep.join(
        directory
        for directory in os.environ.get("PATH", "").split(os.pathsep)
        if not os.path.exists(os.path.join(directory, "nvidia-smi"))
    )


def test_skips_with_the_reason_when_nvidia_smi_is_absent():
    env = dict(os.environ, PATH=_path_without_nvidia_smi())

    done = subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout == "gpu_check: skipped: no GPU (nvidia-smi is not on PATH)\n"


def test_skips_when_nvidia_smi_lists_no_gpu(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'No devices were found'\nexit 6\n")
    fake.chmod(0o755)
    env = dict(
        os.environ,
        PATH=f"{tmp_path}{os.pathsep}{_path_without_nvidia_smi()}",
        PYTHON=sys.executable,
    )
    env.pop("CUDA_VISIBLE_DEVICES", None)

    done = subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gpu_check: skipped: no GPU (nvidia-smi -L lists none")


LOG = """\
I0000 00:00:1712 gpu_device.cc:2020] Created device /job:localhost/replica:0/task:0/device:GPU:0 with 137000 MB memory:  -> device: 0, name: NVIDIA H200, pci bus id: 0000:19:00.0, compute capability: 9.0
[worker:1] I0000 gpu_device.cc:2020] Created device /job:worker/replica:0/task:1/device:GPU:0 with 137000 MB memory:  -> device: 0, name: NVIDIA H200, pci bus id: 0000:3b:00.0, compute capability: 9.0
[worker:1] I0000 gpu_device.cc:2020] Created device /job:worker/replica:0/task:1/device:GPU:0 with 137000 MB memory:  -> device: 0, name: NVIDIA H200, pci bus id: 0000:3b:00.0, compute capability: 9.0
[chief:0] epoch 1/5 ...
"""  # noqa: E501


def test_parse_devices_groups_by_task():
    assert parse_devices(LOG) == {
        "main": ["/job:localhost/replica:0/task:0/device:GPU:0 (NVIDIA H200)"],
        "worker:1": ["/job:worker/replica:0/task:1/device:GPU:0 (NVIDIA H200)"],
    }


def test_plan_runs_one_worker_per_gpu():
    runs = plan_runs(4)

    assert runs["multi_worker"] == [
        "--strategy=multi_worker",
        "--num_workers=4",
        "--gpus_per_worker=1",
    ]
    assert (
        "--num_ps=1" in runs["parameter_server"] and "--num_workers=4" in runs["parameter_server"]
    )


def test_problems_of_a_run():
    good = {
        "exit_code": 0,
        "num_replicas": 2,
        "devices": {"worker:0": ["/job:worker/.../device:GPU:0 (H200)"]},
    }
    on_cpu = {"exit_code": 0, "num_replicas": 2, "devices": {}}
    ps_on_gpu = dict(good, devices={"ps:0": ["/job:ps/.../device:GPU:0 (H200)"]})

    assert problems_of("mirrored", good, 2) == []
    assert problems_of("mirrored", {"exit_code": 1}, 2) == ["mirrored: exit code 1"]
    assert problems_of("mirrored", on_cpu, 2) == ["mirrored: no task created a GPU device"]
    assert problems_of("pss", ps_on_gpu, 2) == ["pss: a ps task created a GPU device"]
    assert problems_of("mirrored", dict(good, num_replicas=1), 2) == [
        "mirrored: num_replicas 1 != 2 GPUs"
    ]
