"""Scaling report: the same job at several worker counts, as a table and a plot.

    python -m tfdist.scaling --workers=1,2,4 --strategy=multi_worker --dataset=synthetic

Owns running one trainer job per worker count as a local cluster (planned and
run by `launch` as every launcher does: `launch.plan.LaunchSpec` and
`launch.run_launch`, so with network isolation and `--gpus_per_worker`; each
run `python -m tfdist.train --num_workers=N ... --metrics_json=...`, every
other flag passed through to the trainer) and
turning the runs' summaries into a report under `--out_dir`: `scaling.csv`,
`scaling.md` and `scaling.png` (throughput and scaling efficiency against
the number of workers), plus each run's log and metrics JSON. Efficiency is
throughput divided by (throughput of the smallest run x its share of the
workers). It imports no TensorFlow; the plot needs matplotlib.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import shlex
import sys
from collections.abc import Mapping, Sequence

from launch import (
    CLUSTER_STRATEGIES,
    LaunchError,
    LaunchSpec,
    run_launch,
    tfdist_server_command,
    visible_gpu_ids,
)
from tfdist.config import ConfigError

_SET_PER_RUN = ("--num_workers", "--metrics_json")  # Trainer flags this module sets.
COLUMNS = (
    "workers",
    "replicas",
    "global_batch_size",
    "examples_per_sec",
    "speedup",
    "efficiency",
    "val_accuracy",
    "wall_seconds",
    "startup_seconds",
)


@dataclasses.dataclass(frozen=True)
class ScalingRow:
    """One worker count's result."""

    workers: int
    replicas: int
    global_batch_size: int
    examples_per_sec: float
    speedup: float
    efficiency: float
    val_accuracy: float | None
    wall_seconds: float
    startup_seconds: float | None = None  # The chief's process start to first loop done.


def parse_workers(text: str) -> list[int]:
    """`"1,2,4"` → `[1, 2, 4]`: distinct positive counts, ascending."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        raise ConfigError(
            f"--workers ({text!r}) must list distinct positive worker counts, e.g. --workers=1,2,4."
        )
    return sorted(counts)


def scaling_rows(summaries: Sequence[dict]) -> list[ScalingRow]:
    """Rows from the runs' metrics JSON, smallest worker count first (the baseline)."""
    ordered = sorted(summaries, key=lambda s: s["num_workers"])
    base = ordered[0]
    rows = []
    for summary in ordered:
        speedup = summary["examples_per_sec"] / base["examples_per_sec"]
        rows.append(
            ScalingRow(
                workers=summary["num_workers"],
                replicas=summary["num_replicas"],
                global_batch_size=summary["global_batch_size"],
                examples_per_sec=summary["examples_per_sec"],
                speedup=speedup,
                efficiency=speedup / (summary["num_workers"] / base["num_workers"]),
                val_accuracy=summary["val_accuracy"],
                wall_seconds=summary["wall_seconds"],
                startup_seconds=summary.get("startup_seconds"),
            )
        )
    return rows


def machine_description() -> str:
    """This machine in one line: CPU cores, OS and Python; GPUs are not probed."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{cores} CPU cores ({platform.machine()}, {platform.system()}), "
        f"Python {platform.python_version()}"
    )


def write_csv(rows: Sequence[ScalingRow], path: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(dataclasses.asdict(row))


def markdown_table(rows: Sequence[ScalingRow]) -> str:
    lines = [
        "| workers | replicas | global batch | examples/s | speedup | efficiency "
        "| val accuracy | wall s | first step s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        accuracy = "" if row.val_accuracy is None else f"{row.val_accuracy:.4f}"
        startup = "" if row.startup_seconds is None else f"{row.startup_seconds:.1f}"
        lines.append(
            f"| {row.workers} | {row.replicas} | {row.global_batch_size} | "
            f"{row.examples_per_sec:,.0f} | {row.speedup:.2f}x | "
            f"{row.efficiency:.0%} | {accuracy} | {row.wall_seconds:.1f} | "
            f"{startup} |"
        )
    return "\n".join(lines)


def write_markdown(rows: Sequence[ScalingRow], path: str, *, command: str, strategy: str) -> None:
    with open(path, "w") as f:
        f.write(
            f"# Scaling of `{strategy}`\n\n`{command}`\n\nMachine: "
            f"{machine_description()}.\n\n{markdown_table(rows)}\n"
        )


def plot_scaling(rows: Sequence[ScalingRow], path: str, *, title: str) -> None:
    """Writes a PNG: throughput (with linear scaling) and efficiency against workers."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(
            "the plot needs matplotlib; pip install matplotlib (or pip install -e '.[report]')."
        ) from None
    workers = [row.workers for row in rows]
    base = rows[0]
    figure = Figure(figsize=(9, 3.6), layout="constrained")
    throughput, efficiency = figure.subplots(1, 2)
    throughput.plot(workers, [row.examples_per_sec for row in rows], "o-", label="measured")
    throughput.plot(
        workers,
        [base.examples_per_sec * n / base.workers for n in workers],
        "--",
        color="gray",
        label="linear",
    )
    throughput.set(
        xlabel="workers", ylabel="examples/s", title="Throughput", xticks=workers, ylim=(0, None)
    )
    throughput.legend()
    efficiency.plot(workers, [100 * row.efficiency for row in rows], "o-", color="tab:red")
    efficiency.axhline(100, linestyle="--", color="gray")
    efficiency.set(
        xlabel="workers",
        ylabel="% of linear",
        title="Scaling efficiency",
        xticks=workers,
        ylim=(0, max(110, *(105 * r.efficiency for r in rows))),
    )
    figure.suptitle(title)
    figure.savefig(path, dpi=110)


def run_paths(out_dir: str, num_workers: int) -> tuple[str, str]:
    """The metrics JSON and the log of the run on `num_workers` workers."""
    stem = os.path.join(out_dir, f"workers_{num_workers}")
    return f"{stem}.json", f"{stem}.log"


def run_spec(
    num_workers: int,
    *,
    strategy: str,
    num_ps: int,
    trainer_flags: Sequence[str],
    metrics: str,
    gpus_per_worker: int = 0,
    isolate_network: bool = True,
    environ: Mapping[str, str] | None = None,
) -> LaunchSpec:
    """The launch of one worker count: the trainer on every task, tfdist's servers under PSS."""
    environ = os.environ if environ is None else environ
    num_ps = num_ps if strategy == "parameter_server" else 0
    ps_flags = [f"--num_ps={num_ps}"] if num_ps else []
    command = [
        sys.executable,
        "-m",
        "tfdist.train",
        f"--strategy={strategy}",
        f"--num_workers={num_workers}",
        *ps_flags,
        *trainer_flags,
        f"--metrics_json={metrics}",
    ]
    return LaunchSpec(
        strategy=strategy,
        command=command,
        server_command=tfdist_server_command(),
        num_workers=num_workers,
        num_ps=num_ps,
        base_env=dict(environ),
        gpus_per_worker=gpus_per_worker,
        gpu_ids=visible_gpu_ids(environ=environ),
        isolate_network=isolate_network,
    )


def run_size(spec: LaunchSpec, *, metrics: str, log_path: str) -> tuple[int, dict | None]:
    """Runs one worker count's launch, its output into `log_path`.

    Returns:
        The exit code and the run's metrics JSON, or None when the run failed.
    """
    if os.path.exists(metrics):
        os.remove(metrics)  # A previous report's JSON must not pass for this run's.
    with open(log_path, "w") as log:
        report = run_launch(
            spec, output=log, announce=lambda line: print(f"launch: {line}", file=log, flush=True)
        )
    if report.exit_code or not os.path.exists(metrics):
        return report.exit_code, None
    with open(metrics) as f:
        return 0, json.load(f)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tfdist.scaling",
        allow_abbrev=False,
        description="Runs the same trainer job at each worker count and reports throughput "
        "and scaling efficiency. Unknown flags go to python -m tfdist.train; "
        "pass --epochs=2 or more (the first, compiling epoch is not timed).",
    )
    parser.add_argument(
        "--workers",
        default="1,2,4",
        help="Worker counts to run, e.g. 1,2,4 (the smallest is the baseline).",
    )
    parser.add_argument(
        "--strategy",
        choices=CLUSTER_STRATEGIES,
        default="multi_worker",
        help="multi_worker (synchronous) or parameter_server (see --num_ps).",
    )
    parser.add_argument(
        "--num_ps",
        type=int,
        default=1,
        help="Parameter servers of each --strategy=parameter_server run.",
    )
    parser.add_argument(
        "--gpus_per_worker",
        type=int,
        default=0,
        help="GPUs of each worker task (CUDA_VISIBLE_DEVICES), as "
        "python -m launch gives them; 0: every worker sees all GPUs.",
    )
    parser.add_argument(
        "--isolate_network",
        dest="isolate_network",
        action="store_true",
        default=True,
        help="Run each size's tasks in a private network namespace (loopback "
        "only; needs root and iproute2), as python -m tfdist.train does; "
        "the default.",
    )
    parser.add_argument(
        "--noisolate_network",
        dest="isolate_network",
        action="store_false",
        help="Run the tasks in this machine's network.",
    )
    parser.add_argument(
        "--out_dir",
        default="scaling_report",
        help="Where the CSV, Markdown, PNG and each run's log and JSON go.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parses flags, runs every size, writes the report; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args, trainer_flags = _parser().parse_known_args(argv)
    try:
        taken = [flag for flag in trainer_flags if flag.split("=")[0] in _SET_PER_RUN]
        if taken:
            raise ConfigError(
                f"{taken[0]} is set by tfdist.scaling for each run; drop it "
                "(use --workers for the worker counts)."
            )
        sizes = parse_workers(args.workers)
        os.makedirs(args.out_dir, exist_ok=True)
        summaries = []
        for size in sizes:
            print(f"tfdist.scaling: {size} worker(s)...", flush=True)
            metrics, log_path = run_paths(args.out_dir, size)
            spec = run_spec(
                size,
                strategy=args.strategy,
                num_ps=args.num_ps,
                trainer_flags=trainer_flags,
                metrics=metrics,
                gpus_per_worker=args.gpus_per_worker,
                isolate_network=args.isolate_network,
            )
            exit_code, summary = run_size(spec, metrics=metrics, log_path=log_path)
            if summary is None:
                print(
                    f"tfdist.scaling: error: the run on {size} worker(s) failed (exit code "
                    f"{exit_code}); see {log_path}.",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
            summaries.append(summary)
        rows = scaling_rows(summaries)
        command = shlex.join(["python", "-m", "tfdist.scaling", *argv])
        paths = {ext: os.path.join(args.out_dir, f"scaling.{ext}") for ext in ("csv", "md", "png")}
        write_csv(rows, paths["csv"])
        write_markdown(rows, paths["md"], command=command, strategy=args.strategy)
        plot_scaling(rows, paths["png"], title=f"{args.strategy} on {machine_description()}")
    except (ConfigError, LaunchError) as error:
        print(f"tfdist.scaling: error: {error}", file=sys.stderr, flush=True)
        return 2
    print(markdown_table(rows), flush=True)
    print(f"tfdist.scaling: wrote {', '.join(paths.values())}", flush=True)
    return 0
