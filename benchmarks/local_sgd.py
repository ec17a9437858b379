"""Local SGD and DiLoCo against synchronous training, and time to first step, in one run.

    python benchmarks/local_sgd.py [--repeats 3] [--only throughput,cnn,accuracy,startup]

Sections (each configuration run once per round, rounds interleaved, so every ratio is
taken between runs made side by side; a ratio is printed as the median of its rounds
with their min-max):
  throughput  the reference job (synthetic 784 features, MLP 784-256-10, Adam, global
              batch 256, 3 epochs, examples/s of epochs 2..3): one_device, multi_worker x2,
              multi_worker x2 --sync_every=8
  cnn         the compute-heavy reference job (synthetic 32x32x3 images, cnn), same trio
  accuracy    digits validation accuracy after the same examples (global batch 32, 8 epochs
              of 96 steps), multi_worker x2: synchronous, --sync_every=8, and DiLoCo
              --sync_every=32 --outer_optimizer=nesterov; one seed per round
  startup     a local 2-worker launch's first step (launcher start to the chief's first
              loop done) against `python -c "import tensorflow"`
Prints one line per measurement, then the ratios and one JSON line. A benchmark, not a
test: nothing here asserts a time.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _runs import REPO, run_trainer

MLP_JOB = [
    "--dataset=synthetic",
    "--num_examples=60000",
    "--model=mlp",
    "--optimizer=adam",
    "--global_batch_size=256",
    "--epochs=3",
    "--steps_per_loop=234",
]
CNN_JOB = [
    "--dataset=synthetic",
    "--image_shape=32x32x3",
    "--num_examples=6144",
    "--model=cnn",
    "--optimizer=adam",
    "--global_batch_size=256",
    "--epochs=3",
    "--steps_per_loop=24",
]
RUNS = {
    "one process": ["--strategy=one_device"],
    "multi_worker x2": ["--strategy=multi_worker", "--num_workers=2"],
    "multi_worker x2 --sync_every=8": [
        "--strategy=multi_worker",
        "--num_workers=2",
        "--sync_every=8",
    ],
}
DIGITS_JOB = [
    "--strategy=multi_worker",
    "--num_workers=2",
    "--dataset=digits",
    "--global_batch_size=32",
    "--epochs=8",
    "--steps_per_epoch=96",
    "--steps_per_loop=96",
]
ACCURACY_RUNS = {
    "synchronous": [],
    "--sync_every=8": ["--sync_every=8"],
    "DiLoCo H=32 nesterov": ["--sync_every=32", "--outer_optimizer=nesterov"],
}


def _spread(values):
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def throughput(job, repeats):
    """examples/s per configuration and per round."""
    results = {name: [] for name in RUNS}
    for round_ in range(repeats):
        for name, flags in RUNS.items():
            summary = run_trainer([*job, *flags])
            results[name].append(summary["examples_per_sec"])
            print(
                f"  round {round_ + 1} {name:32s} {summary['examples_per_sec']:>9,.0f} ex/s",
                flush=True,
            )
    base = results["one process"]
    ratios = {
        name: [v / b for v, b in zip(values, base, strict=False)]
        for name, values in results.items()
    }
    return {"examples_per_sec": results, "vs_one_process": ratios}


def accuracy(repeats):
    results = {name: [] for name in ACCURACY_RUNS}
    for round_ in range(repeats):
        for name, flags in ACCURACY_RUNS.items():
            summary = run_trainer([*DIGITS_JOB, f"--seed={round_}", *flags])
            results[name].append(summary["val_accuracy"])
            print(
                f"  seed {round_} {name:24s} val_accuracy {summary['val_accuracy']:.4f} "
                f"({summary['history'][-1]['global_step']} steps)",
                flush=True,
            )
    base = results["synchronous"]
    points = {
        name: [100 * (v - b) for v, b in zip(values, base, strict=False)]
        for name, values in results.items()
    }
    return {"val_accuracy": results, "points_vs_synchronous": points}


def _import_tensorflow_seconds():
    started = time.time()
    subprocess.run(
        [sys.executable, "-c", "import tensorflow"],
        check=True,
        cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True,
    )
    return time.time() - started


def _launch_first_step_seconds():
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "metrics.json")
        started = time.time()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "tfdist.train",
                "--num_workers=2",
                "--strategy=multi_worker",
                "--dataset=digits",
                "--epochs=1",
                "--steps_per_epoch=1",
                "--steps_per_loop=1",
                f"--metrics_json={metrics}",
            ],
            check=True,
            cwd=REPO,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
            capture_output=True,
        )
        with open(metrics) as f:
            summary = json.load(f)
    return summary["first_step_unix_time"] - started, summary["task_startup_seconds"]


def startup(repeats):
    imports, launches, tasks = [], [], []
    for round_ in range(repeats):
        imports.append(_import_tensorflow_seconds())
        launch, per_task = _launch_first_step_seconds()
        launches.append(launch)
        tasks.append(per_task)
        print(
            f"  round {round_ + 1} import tensorflow {imports[-1]:.2f} s, 2-worker launch to "
            f"first step {launch:.2f} s (tasks, own start to first step: {per_task})",
            flush=True,
        )
    return {
        "import_tensorflow_s": imports,
        "launch_first_step_s": launches,
        "task_startup_s": tasks,
        "launch_vs_import": [a / b for a, b in zip(launches, imports, strict=False)],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="throughput,cnn,accuracy,startup")
    args = parser.parse_args()
    sections = args.only.split(",")
    report = {
        "repeats": args.repeats,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
    }
    if "throughput" in sections:
        print("reference job (MLP):", flush=True)
        report["throughput"] = throughput(MLP_JOB, args.repeats)
    if "cnn" in sections:
        print("compute-heavy job (cnn, 32x32x3):", flush=True)
        report["cnn"] = throughput(CNN_JOB, args.repeats)
    if "accuracy" in sections:
        print("digits accuracy after the same examples:", flush=True)
        report["accuracy"] = accuracy(args.repeats)
    if "startup" in sections:
        print("time to first step:", flush=True)
        report["startup"] = startup(args.repeats)
    print(f"\nmedians of {args.repeats} rounds (min-max), ratios within each round:")
    for key in ("throughput", "cnn"):
        for name, ratios in report.get(key, {}).get("vs_one_process", {}).items():
            print(f"  {key:10s} {name:32s} vs one process: {_spread(ratios)}")
    for name, points in report.get("accuracy", {}).get("points_vs_synchronous", {}).items():
        accuracies = report["accuracy"]["val_accuracy"][name]
        print(
            f"  accuracy   {name:32s} {_spread(accuracies)}; points vs synchronous: "
            f"{_spread(points)}"
        )
    if "startup" in report:
        print(
            f"  startup    2-worker launch / import tensorflow: "
            f"{_spread(report['startup']['launch_vs_import'])}"
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
