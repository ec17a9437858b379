"""End-to-end helpers: run the real trainer as processes on loopback, read its summary."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_command(argv, *, timeout=300, env=None):
    """Runs ``argv`` from the repository root; returns the CompletedProcess (text)."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    full_env.pop("TF_CONFIG", None)
    full_env.update(env or {})
    return subprocess.run(
        argv, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def run_trainer(tmp_path, *flags, timeout=300, env=None):
    """Runs ``python -m tfdist.train FLAGS --metrics_json``; returns (process, summary or None)."""
    metrics = tmp_path / "metrics.json"
    process = run_command(
        [sys.executable, "-m", "tfdist.train", *flags, f"--metrics_json={metrics}"],
        timeout=timeout,
        env=env,
    )
    summary = json.loads(metrics.read_text()) if metrics.exists() else None
    return process, summary


def explain(process) -> str:
    return (
        f"exit {process.returncode}\n--- stdout\n{process.stdout[-4000:]}"
        f"\n--- stderr\n{process.stderr[-4000:]}"
    )
