"""Sync vs async on the same job: accuracy against steps and against wall time.

    python benchmarks/sync_vs_async.py [--epochs 10] [--plot sync_vs_async.png]

Trains the same MLP on `digits` with the same global batch under `multi_worker`
(synchronous all-reduce, 2 workers) and `parameter_server` (asynchronous, 2 workers +
1 ps), and prints per epoch the optimizer step, the wall seconds since training began
and the validation accuracy of each: the consistency/latency trade-off. With --plot
(needs matplotlib) it also draws both curves. A benchmark, not a test.
"""

import argparse
import json

from _runs import run_trainer

JOB = [
    "--dataset=digits",
    "--model=mlp",
    "--global_batch_size=64",
    "--optimizer=adam",
    "--learning_rate=0.001",
]
RUNS = {
    "sync (multi_worker)": ["--strategy=multi_worker", "--num_workers=2"],
    "async (parameter_server)": ["--strategy=parameter_server", "--num_workers=2", "--num_ps=1"],
}


def _plot(curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_step, by_time) = plt.subplots(1, 2, figsize=(10, 4))
    for name, points in curves.items():
        by_step.plot(
            [p["global_step"] for p in points],
            [p["val_accuracy"] for p in points],
            marker="o",
            label=name,
        )
        by_time.plot(
            [p["wall_seconds"] for p in points],
            [p["val_accuracy"] for p in points],
            marker="o",
            label=name,
        )
    by_step.set(xlabel="optimizer step", ylabel="validation accuracy")
    by_time.set(xlabel="wall seconds", ylabel="validation accuracy")
    by_step.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--plot", default=None, help="PNG path for the two curves")
    args = parser.parse_args()
    curves = {}
    for name, flags in RUNS.items():
        summary = run_trainer(JOB + flags + [f"--epochs={args.epochs}"])
        curves[name] = [
            {
                "epoch": e["epoch"],
                "global_step": e["global_step"],
                "wall_seconds": e["wall_seconds"],
                "val_accuracy": e["val_accuracy"],
            }
            for e in summary["history"]
        ]
    print("| epoch | " + " | ".join(f"{n}: step, s, val_acc" for n in curves) + " |")
    print("|---|" + "---|" * len(curves))
    for i in range(args.epochs):
        cells = [
            f"{c[i]['global_step']}, {c[i]['wall_seconds']:.1f}, {c[i]['val_accuracy']:.3f}"
            for c in curves.values()
        ]
        print(f"| {i + 1} | " + " | ".join(cells) + " |")
    if args.plot:
        _plot(curves, args.plot)
        print(f"plot written to {args.plot}")
    print(json.dumps(curves))


if __name__ == "__main__":
    main()
