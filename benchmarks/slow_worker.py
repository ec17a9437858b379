"""One worker at a third of its speed: multi_worker, --sync_every and parameter_server.

    python benchmarks/slow_worker.py [--repeats 1] [--duty 0.33] [--period 0.3] [--target 0.7]
        [--only NAME ...] [--plot PNG]

Slows worker 1 of a local 2-worker launch by real means: from the harness, SIGSTOP and
SIGCONT in a duty cycle (runs ``duty`` of every ``period`` seconds), from the moment the
task process exists to the end (``tests/helpers/slowdown.py``). Each configuration runs
unslowed and slowed back to back on the reference job (synthetic, MLP 784-256-10, Adam,
global batch 256, 3 epochs); prints examples/s (epochs 2..3), the seconds from the start
of training to the end of the first epoch whose validation accuracy reaches ``target``
(the metrics JSON's per-epoch history; None if none does), the steps each worker ran
under parameter_server, the slowed/unslowed ratios, and one JSON line; ``--plot`` also
draws them (matplotlib), ``--from_json`` redraws a printed JSON line. A benchmark, not a
test.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

from _runs import REPO

sys.path.insert(0, os.path.join(REPO, "tests", "helpers"))
from slowdown import run_slowed

JOB = [
    "--dataset=synthetic",
    "--num_examples=60000",
    "--model=mlp",
    "--optimizer=adam",
    "--global_batch_size=256",
    "--epochs=3",
    "--noisolate_network",
]
CONFIGS = {
    "multi_worker": ["--strategy=multi_worker", "--num_workers=2", "--steps_per_loop=64"],
    "multi_worker --sync_every=8": [
        "--strategy=multi_worker",
        "--num_workers=2",
        "--steps_per_loop=64",
        "--sync_every=8",
    ],
    "parameter_server": [
        "--strategy=parameter_server",
        "--num_workers=2",
        "--num_ps=1",
        "--steps_per_loop=32",
    ],
    "parameter_server --sync_every=8": [
        "--strategy=parameter_server",
        "--num_workers=2",
        "--num_ps=1",
        "--steps_per_loop=32",
        "--sync_every=8",
    ],
}
KINDS = ("unslowed", "slowed")


def run(flags, *, slow, duty, period, repo=REPO):
    """One launch of the reference job with ``flags``; returns its metrics JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "metrics.json")
        argv = [sys.executable, "-m", "tfdist.train", *JOB, *flags, f"--metrics_json={metrics}"]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        env.pop("TF_CONFIG", None)
        with open(os.path.join(tmp, "run.log"), "w") as log:
            code, _ = run_slowed(
                argv, cwd=repo, env=env, log=log, slow=slow, timeout=1800, duty=duty, period=period
            )
        if code:
            with open(os.path.join(tmp, "run.log")) as log:
                raise RuntimeError(f"{' '.join(flags)} failed ({code}):\n{log.read()[-3000:]}")
        with open(metrics) as f:
            return json.load(f)


def seconds_to(summary, target):
    """Seconds since training began at the end of the first epoch with val accuracy >= target."""
    for epoch in summary["history"]:
        if (epoch["val_accuracy"] or 0.0) >= target:
            return epoch["wall_seconds"]
    return None


def _empty():
    return {kind: [] for kind in KINDS} | {
        "target_seconds": {kind: [] for kind in KINDS},
        "steps_by_worker": {kind: [] for kind in KINDS},
    }


def _record(values, kind, summary, target):
    values[kind].append(summary["examples_per_sec"])
    values["target_seconds"][kind].append(seconds_to(summary, target))
    values["steps_by_worker"][kind].append(summary["steps_by_worker"])
    seconds = values["target_seconds"][kind][-1]
    steps = summary["steps_by_worker"]
    accuracies = "/".join(f"{e['val_accuracy'] or 0:.3f}" for e in summary["history"])
    return (
        f"{summary['examples_per_sec']:>9,.0f} ex/s, "
        f"{'-' if seconds is None else f'{seconds:.1f}':>5} s to {target} "
        f"(val accuracy by epoch {accuracies})" + (f", steps by worker {steps}" if steps else "")
    )


def _bars(axis, report, key, label):
    """Median unslowed and slowed bars of ``results[name][key]`` (or of its by-kind dict)."""
    names = list(report["results"])
    top = 0.0
    for offset, kind in ((-0.2, "unslowed"), (0.2, "slowed")):
        values, reached = [], []
        for name in names:
            found = report["results"][name]
            found = found[key][kind] if key else found[kind]
            reached.append([v for v in found if v is not None])
            values.append(statistics.median(reached[-1]) if reached[-1] else 0.0)
            if key and len(reached[-1]) < len(found):
                axis.annotate(
                    f"{len(reached[-1])} of {len(found)}\nreached",
                    (len(values) - 1 + offset, values[-1]),
                    ha="center",
                    va="bottom",
                )
        top = max(top, *values)
        bars = axis.bar([i + offset for i in range(len(names))], values, width=0.4, label=kind)
        if kind == "slowed" and not key:
            for bar, name in zip(bars, names, strict=False):
                ratio = statistics.median(report["results"][name]["ratio"])
                axis.annotate(
                    f"{ratio:.2f}x",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                )
    axis.set_xticks(range(len(names)), [n.replace(" --", "\n--") for n in names])
    axis.set_ylabel(label)
    axis.set_ylim(0, 1.25 * top)
    axis.legend(loc="upper left", ncol=2)


def plot(report, path):
    """Bars of the median examples/s (and seconds to the target), unslowed and slowed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(report["results"].values()))
    timed = "target_seconds" in first
    figure, axes = plt.subplots(1, 2 if timed else 1, figsize=(12 if timed else 7, 3.8))
    axes = list(axes) if timed else [axes]
    _bars(axes[0], report, None, "examples/s (epochs 2-3)")
    if timed:
        _bars(
            axes[1],
            report,
            "target_seconds",
            f"s to val accuracy {report['target']} (lower is better)",
        )
    figure.suptitle(
        f"worker 1 runs {report['duty']:.2f} of every {report['period']} s "
        f"(SIGSTOP/SIGCONT), {len(first['ratio'])} round(s)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def report_lines(results, target):
    """The summary: per configuration the ratio and the seconds to ``target``, with spreads."""
    lines = []
    for name, values in results.items():
        values["ratio"] = [
            s / u for s, u in zip(values["slowed"], values["unslowed"], strict=False)
        ]
        seconds = values["target_seconds"]
        lines.append(
            f"  {name:30s} throughput {_spread(values['ratio'])}; s to {target}: "
            f"unslowed {_spread(seconds['unslowed'])}, slowed {_spread(seconds['slowed'])}"
        )
        steps = values["steps_by_worker"]
        if any(steps["slowed"]):
            lines.append(
                f"  {'':30s} steps by worker: unslowed {steps['unslowed']}, "
                f"slowed {steps['slowed']}"
            )
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--duty", type=float, default=1 / 3)
    parser.add_argument("--period", type=float, default=0.3)
    parser.add_argument(
        "--target",
        type=float,
        default=0.7,
        help="validation accuracy whose time to reach is measured",
    )
    parser.add_argument(
        "--only", nargs="*", default=None, choices=list(CONFIGS), help="these configurations only"
    )
    parser.add_argument("--plot", default=None, help="PNG path for a bar chart")
    parser.add_argument("--from_json", default=None, help="a printed JSON line's file: replot")
    args = parser.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            plot(json.loads(f.read().strip().splitlines()[-1]), args.plot or "slow_worker.png")
        return
    results = {name: _empty() for name in (args.only or CONFIGS)}
    for round_ in range(args.repeats):
        for name, values in results.items():
            for slow in (False, True):
                summary = run(CONFIGS[name], slow=slow, duty=args.duty, period=args.period)
                line = _record(values, KINDS[slow], summary, args.target)
                print(f"  round {round_ + 1} {name:30s} {KINDS[slow]:8s} {line}", flush=True)
    print(
        f"\nworker 1 running {args.duty:.2f} of every {args.period} s; slowed/unslowed "
        "(median, min-max):"
    )
    print("\n".join(report_lines(results, args.target)))
    report = {"duty": args.duty, "period": args.period, "target": args.target, "results": results}
    print(json.dumps(report))
    if args.plot:
        plot(report, args.plot)


if __name__ == "__main__":
    main()
