"""One worker at a third of its speed: multi_worker, --sync_every and parameter_server.

    python benchmarks/slow_worker.py [--repeats 1] [--duty 0.33] [--period 0.3] [--plot PNG]

Slows worker 1 of a local 2-worker launch by real means: from the harness, SIGSTOP and
SIGCONT in a duty cycle (runs ``duty`` of every ``period`` seconds), from the moment the
task process exists to the end. Each configuration runs unslowed and slowed back to
back on the reference job (synthetic, MLP 784-256-10, Adam, global batch 256, 3 epochs);
prints examples/s (epochs 2..3), the slowed/unslowed ratio of each, and one JSON line;
``--plot`` also draws them (matplotlib), ``--from_json`` redraws a printed JSON line.
A benchmark, not a test.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from _runs import REPO

JOB = ["--dataset=synthetic", "--num_examples=60000", "--model=mlp", "--optimizer=adam",
       "--global_batch_size=256", "--epochs=3", "--noisolate_network"]
CONFIGS = {
    "multi_worker": ["--strategy=multi_worker", "--num_workers=2", "--steps_per_loop=64"],
    "multi_worker --sync_every=8": ["--strategy=multi_worker", "--num_workers=2",
                                    "--steps_per_loop=64", "--sync_every=8"],
    "parameter_server": ["--strategy=parameter_server", "--num_workers=2", "--num_ps=1",
                         "--steps_per_loop=32"],
}


def _task_of(pid):
    """(type, index) from the TF_CONFIG of process ``pid``, or None."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        task = json.loads(env[b"TF_CONFIG"])["task"]
        return task["type"], int(task["index"])
    except (OSError, KeyError, ValueError):
        return None


def _parents():
    found = {}
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as f:
                found[int(name)] = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError):
            continue
    return found


def _find_worker(root, index, stop):
    """The descendant of ``root`` whose TF_CONFIG says it is worker ``index``."""
    while not stop.is_set():
        parents = _parents()
        for pid in parents:
            ancestor = pid
            while ancestor in parents and ancestor != root:
                ancestor = parents[ancestor]
            if ancestor == root and pid != root and _task_of(pid) == ("worker", index):
                return pid
        time.sleep(0.05)
    return None


def _duty_cycle(root, stop, duty, period, index=1):
    pid = _find_worker(root, index, stop)
    while pid and not stop.is_set():
        try:
            time.sleep(duty * period)
            os.kill(pid, signal.SIGSTOP)
            time.sleep((1 - duty) * period)
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            return
    if pid:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def run(flags, *, slow, duty, period):
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "metrics.json")
        stop = threading.Event()
        launcher = subprocess.Popen([sys.executable, "-m", "tfdist.train", *JOB, *flags,
                                     f"--metrics_json={metrics}"], cwd=REPO,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        slower = threading.Thread(target=_duty_cycle, args=(launcher.pid, stop, duty, period),
                                  daemon=True)
        if slow:
            slower.start()
        try:
            if launcher.wait(timeout=1800):
                raise RuntimeError(f"{' '.join(flags)} failed ({launcher.returncode})")
        finally:
            stop.set()
            if slow:
                slower.join()
        with open(metrics) as f:
            return json.load(f)["examples_per_sec"]


def plot(report, path):
    """Bars of the median examples/s, unslowed and slowed, per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["results"])
    figure, axis = plt.subplots(figsize=(7, 3.6))
    for offset, kind in ((-0.2, "unslowed"), (0.2, "slowed")):
        values = [statistics.median(report["results"][n][kind]) for n in names]
        bars = axis.bar([i + offset for i in range(len(names))], values, width=0.4, label=kind)
        if kind == "slowed":
            for bar, name in zip(bars, names):
                ratio = statistics.median(report["results"][name]["ratio"])
                axis.annotate(f"{ratio:.2f}x", (bar.get_x() + bar.get_width() / 2,
                                                bar.get_height()), ha="center", va="bottom")
    axis.set_xticks(range(len(names)), names)
    axis.set_ylabel("examples/s (epochs 2-3)")
    axis.set_title(f"worker 1 runs {report['duty']:.2f} of every {report['period']} s "
                   f"(SIGSTOP/SIGCONT), {len(report['results'][names[0]]['ratio'])} round(s)")
    axis.set_ylim(0, 1.25 * max(statistics.median(report["results"][n]["unslowed"])
                                for n in names))
    axis.legend(loc="upper left", ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--duty", type=float, default=1 / 3)
    parser.add_argument("--period", type=float, default=0.3)
    parser.add_argument("--plot", default=None, help="PNG path for a bar chart")
    parser.add_argument("--from_json", default=None, help="a printed JSON line's file: replot")
    args = parser.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            plot(json.loads(f.read().strip().splitlines()[-1]), args.plot or "slow_worker.png")
        return
    results = {name: {"unslowed": [], "slowed": []} for name in CONFIGS}
    for round_ in range(args.repeats):
        for name, flags in CONFIGS.items():
            for slow in (False, True):
                value = run(flags, slow=slow, duty=args.duty, period=args.period)
                results[name]["slowed" if slow else "unslowed"].append(value)
                print(f"  round {round_ + 1} {name:30s} {'slowed' if slow else 'unslowed':8s} "
                      f"{value:>9,.0f} ex/s", flush=True)
    print(f"\nworker 1 running {args.duty:.2f} of every {args.period} s; slowed/unslowed:")
    for name, values in results.items():
        ratios = [s / u for s, u in zip(values["slowed"], values["unslowed"])]
        values["ratio"] = ratios
        print(f"  {name:30s} {statistics.median(ratios):.3f} "
              f"({min(ratios):.3f}-{max(ratios):.3f})")
    report = {"duty": args.duty, "period": args.period, "results": results}
    print(json.dumps(report))
    if args.plot:
        plot(report, args.plot)


if __name__ == "__main__":
    main()
