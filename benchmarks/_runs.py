"""Shared by the benchmark scripts: run `python -m tfdist.train` and read its summary,
free loopback ports for hand-made clusters, and the medians of repeated rounds."""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_trainer(flags, *, timeout=1200):
    """Runs the trainer with ``flags`` in a fresh process; returns its metrics JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "metrics.json")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        done = subprocess.run(
            [sys.executable, "-m", "tfdist.train", *flags, f"--metrics_json={metrics}"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"tfdist.train {' '.join(flags)} failed ({done.returncode}):\n{done.stderr[-3000:]}"
            )
        with open(metrics) as f:
            return json.load(f)


def free_ports(count):
    """`count` loopback ports free right now (bound together, so all distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def print_medians(rounds, what, *, width=38, digits=3):
    """Prints each key's median over `rounds` (dicts) with its min-max, then one JSON line."""
    print(f"\n{what}, median of {len(rounds)} round(s) (min-max):")
    summary = {}
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        summary[key] = statistics.median(values)
        print(
            f"  {key:{width}s} {summary[key]:10.{digits}f}  "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})"
        )
    print(json.dumps({k: round(v, 3) for k, v in summary.items()}))
    return summary
