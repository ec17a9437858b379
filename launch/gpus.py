"""Which GPUs this machine has, and which of them each task of a cluster gets.

This module owns two things: finding the GPU ids a launcher may hand out
(`visible_gpu_ids`: from CUDA_VISIBLE_DEVICES when it is set, else from
`nvidia-smi -L`), and dividing them among the tasks that run on one machine
(`assign_gpus`: pure, it returns the CUDA_VISIBLE_DEVICES value of each task).
It never imports TensorFlow (which would grab every GPU) and never writes
`os.environ`; putting the values into each task's env is the planner's job
(`launch.task_plan`, `launch.hosts`, `launch.slurm.sbatch`).

Placement rules: with `gpus_per_worker` N above 0, the compute tasks (the
workers, and a `multi_worker` chief) get N GPUs each, in task order. Under
`parameter_server` the ps tasks and the chief (the coordinator, which runs no
training step) run on the CPU (`CUDA_VISIBLE_DEVICES=""`) whenever the machine
has GPUs. With N = 0 workers keep the GPUs the launcher sees.
"""

import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence

from launch.errors import LaunchError

_NVIDIA_SMI_TIMEOUT_S = 30


def parse_nvidia_smi_list(text: str) -> tuple[str, ...]:
    """Returns the GPU indices `nvidia-smi -L` lists, as strings.

    Args:
        text: The output of `nvidia-smi -L`: one "GPU 0: NAME (UUID: ...)" line
            per GPU (MIG devices are indented under their GPU and not counted).
    """
    ids = []
    for line in text.splitlines():
        head, sep, _ = line.partition(":")
        words = head.split()
        if sep and len(words) == 2 and words[0] == "GPU" and words[1].isdigit():
            ids.append(words[1])
    return tuple(ids)


def parse_cuda_visible_devices(value: str) -> tuple[str, ...]:
    """Returns the device ids of a CUDA_VISIBLE_DEVICES value.

    As CUDA does, the list ends at the first negative id: "" and "-1" hide
    every GPU, "0,-1,1" shows GPU 0 only. Ids may be indices or UUIDs.
    """
    ids = []
    for item in value.split(","):
        item = item.strip()
        if not item or item.startswith("-"):
            break
        ids.append(item)
    return tuple(ids)


def run_nvidia_smi() -> str | None:
    """Returns the output of `nvidia-smi -L`, or None without a working nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", "-L"],
            capture_output=True,
            text=True,
            timeout=_NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def visible_gpu_ids(
    *,
    environ: Mapping[str, str],
    nvidia_smi: Callable[[], str | None] = run_nvidia_smi,
) -> tuple[str, ...]:
    """Returns the ids of the GPUs a launcher may hand out on this machine.

    Args:
        environ: The environment the tasks start from; its
            CUDA_VISIBLE_DEVICES, when set, is the answer.
        nvidia_smi: Returns the output of `nvidia-smi -L`, or None when there
            is no working `nvidia-smi`; injectable for tests.

    Returns:
        The GPU ids, e.g. ("0", "1"); empty when there is no GPU.
    """
    if "CUDA_VISIBLE_DEVICES" in environ:
        return parse_cuda_visible_devices(environ["CUDA_VISIBLE_DEVICES"])
    text = nvidia_smi()
    return () if text is None else parse_nvidia_smi_list(text)


def check_gpus_per_worker(value: object) -> int:
    """Returns `value` if it is an integer of at least 0; raises `LaunchError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LaunchError(
            f"gpus_per_worker ({value!r}) must be an integer of at least 0; pass "
            "--gpus_per_worker=1 for one GPU per worker, or 0 to leave GPUs unassigned."
        )
    return value


def _is_compute(strategy: str, task_type: str) -> bool:
    if strategy == "parameter_server":
        return task_type == "worker"
    return task_type in ("chief", "worker")


def assign_gpus(
    *,
    strategy: str,
    tasks: Sequence[tuple[str, int]],
    gpu_ids: Sequence[str] | None,
    gpus_per_worker: int = 0,
) -> dict[tuple[str, int], str]:
    """Divides one machine's GPUs among the tasks that run on it.

    Args:
        strategy: "multi_worker" or "parameter_server".
        tasks: The `(task_type, index)` of each task on this machine, in order.
        gpu_ids: The machine's GPU ids (e.g. from `visible_gpu_ids`), or None
            when unknown (then only `gpus_per_worker` 0 is allowed).
        gpus_per_worker: GPUs for each compute task; 0 leaves them unassigned.

    Returns:
        The CUDA_VISIBLE_DEVICES value of each task that gets one (e.g.
        {("worker", 1): "2,3", ("ps", 0): ""}); tasks left out keep the value
        they inherit.

    Raises:
        LaunchError: If the machine has too few GPUs for the tasks.
    """
    check_gpus_per_worker(gpus_per_worker)
    if gpus_per_worker and gpu_ids is None:
        raise LaunchError(
            f"gpus_per_worker ({gpus_per_worker}) needs the machine's GPU ids; pass "
            "gpu_ids=launch.visible_gpu_ids(environ=os.environ)."
        )
    gpu_ids = tuple(gpu_ids or ())
    compute = [task for task in tasks if _is_compute(strategy, task[0])]
    needed = len(compute) * gpus_per_worker
    if needed > len(gpu_ids):
        seen = f"{len(gpu_ids)} ({', '.join(gpu_ids)})" if gpu_ids else "none"
        raise LaunchError(
            f"gpus_per_worker ({gpus_per_worker}) for {len(compute)} worker task(s) needs "
            f"{needed} GPUs, but the GPUs visible are {seen}; pass a smaller "
            "--gpus_per_worker or --num_workers, or --gpus_per_worker=0 to train on CPU."
        )
    assigned = {}
    if strategy == "parameter_server" and (gpu_ids or gpus_per_worker):
        assigned.update({task: "" for task in tasks if not _is_compute(strategy, task[0])})
    if gpus_per_worker:
        for number, task in enumerate(compute):
            start = number * gpus_per_worker
            assigned[task] = ",".join(gpu_ids[start : start + gpus_per_worker])
    return assigned
