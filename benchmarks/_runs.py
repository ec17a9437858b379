"""Shared by the benchmark scripts: run `python -m tfdist.train` and read its summary."""

import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_trainer(flags, *, timeout=1200):
    """Runs the trainer with ``flags`` in a fresh process; returns its metrics JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "metrics.json")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        done = subprocess.run([sys.executable, "-m", "tfdist.train", *flags,
                               f"--metrics_json={metrics}"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"tfdist.train {' '.join(flags)} failed ({done.returncode}):\n"
                               f"{done.stderr[-3000:]}")
        with open(metrics) as f:
            return json.load(f)
