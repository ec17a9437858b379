"""The GPU check behind tests/gpu/gpu_check.sh: three real runs on this machine's GPUs.

Runs `python -m tfdist.train` on digits under `mirrored` over all GPUs,
`multi_worker` with one process per GPU (`--gpus_per_worker=1`) and
`parameter_server` with one worker per GPU and the ps and chief on the CPU, each
with `--metrics_json`, and prints one JSON summary: per run its exit code,
val_accuracy, examples_per_sec, num_replicas, num_workers and the devices
TensorFlow created in each task (its "Created device" log lines). Exits 1 when
a run failed, trained on no GPU, or put a ps task on a GPU; 0 otherwise, and 0
with "skipped: no GPU" on a machine without one.
"""

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from launch.gpus import run_nvidia_smi, visible_gpu_ids  # noqa: E402

_CREATED = re.compile(
    r"(?:^\[(?P<task>[a-z]+:\d+)\] )?.*Created device (?P<device>\S+) "
    r"with \d+ MB memory:.*?name: (?P<name>[^,]+)"
)


def parse_devices(log: str) -> dict[str, list[str]]:
    """Returns each task's created devices from a run's output, e.g.
    {"worker:0": ["/job:worker/replica:0/task:0/device:GPU:0 (NVIDIA H200)"]}.

    Lines without a "[task] " prefix (a single-process run) count as task "main".
    """
    devices: dict[str, set[str]] = {}
    for line in log.splitlines():
        match = _CREATED.search(line)
        if match:
            devices.setdefault(match["task"] or "main", set()).add(
                f"{match['device']} ({match['name'].strip()})"
            )
    return {task: sorted(names) for task, names in sorted(devices.items())}


def plan_runs(num_gpus: int) -> dict[str, list[str]]:
    """Returns the trainer flags of each run for a machine with `num_gpus` GPUs."""
    return {
        "mirrored": ["--strategy=mirrored"],
        "multi_worker": [
            "--strategy=multi_worker",
            f"--num_workers={num_gpus}",
            "--gpus_per_worker=1",
        ],
        "parameter_server": [
            "--strategy=parameter_server",
            f"--num_workers={num_gpus}",
            "--num_ps=1",
            "--gpus_per_worker=1",
        ],
    }


def problems_of(name: str, run: dict, num_gpus: int) -> list[str]:
    """Returns what is wrong with one run's summary, if anything."""
    problems = []
    if run["exit_code"] != 0:
        problems.append(f"{name}: exit code {run['exit_code']}")
        return problems
    gpu_tasks = [
        task for task, names in run["devices"].items() if any("GPU" in device for device in names)
    ]
    if not gpu_tasks:
        problems.append(f"{name}: no task created a GPU device")
    if any(task.startswith("ps:") for task in gpu_tasks):
        problems.append(f"{name}: a ps task created a GPU device")
    if run.get("num_replicas") != num_gpus:
        problems.append(f"{name}: num_replicas {run.get('num_replicas')} != {num_gpus} GPUs")
    return problems


def _text(output) -> str:
    if output is None:
        return ""
    return output.decode(errors="replace") if isinstance(output, bytes) else output


def _run(
    name: str,
    flags: list[str],
    *,
    num_gpus: int,
    epochs: int,
    directory: pathlib.Path,
    timeout: float,
) -> dict:
    metrics = directory / f"{name}.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0")  # TF logs each device it creates.
    env.pop("TF_CONFIG", None)
    argv = [
        sys.executable,
        "-m",
        "tfdist.train",
        *flags,
        "--dataset=digits",
        f"--epochs={epochs}",
        f"--global_batch_size={16 * num_gpus}",
        f"--metrics_json={metrics}",
    ]
    try:
        done = subprocess.run(
            argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
        )
        code, log = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as expired:
        code, log = "timeout", _text(expired.stdout) + _text(expired.stderr)
    summary = json.loads(metrics.read_text()) if metrics.exists() else {}
    run = {"exit_code": code, "command": " ".join(["python", *argv[1:]])}
    for key in ("val_accuracy", "examples_per_sec", "num_replicas", "num_workers", "wall_seconds"):
        run[key] = summary.get(key)
    run["devices"] = parse_devices(log)
    if code != 0:
        run["log_tail"] = log.splitlines()[-15:]
    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="Epochs of each run.")
    parser.add_argument("--timeout", type=float, default=600, help="Seconds per run.")
    args = parser.parse_args(argv)
    gpu_ids = visible_gpu_ids(environ=os.environ)
    if not gpu_ids:
        print(
            "gpu_check: skipped: no GPU (nvidia-smi -L lists none, or "
            "CUDA_VISIBLE_DEVICES hides them all)"
        )
        return 0
    listing = (run_nvidia_smi() or "").splitlines()
    summary = {"gpu_ids": list(gpu_ids), "nvidia_smi": listing, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="tfdist-gpu-check-") as tmp:
        for name, flags in plan_runs(len(gpu_ids)).items():
            print(f"gpu_check: running {name} ...", file=sys.stderr, flush=True)
            summary["runs"][name] = _run(
                name,
                flags,
                num_gpus=len(gpu_ids),
                epochs=args.epochs,
                directory=pathlib.Path(tmp),
                timeout=args.timeout,
            )
    summary["problems"] = [
        problem
        for name, run in summary["runs"].items()
        for problem in problems_of(name, run, len(gpu_ids))
    ]
    print(json.dumps(summary, indent=2))
    return 1 if summary["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
