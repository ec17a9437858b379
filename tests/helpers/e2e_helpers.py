"""End-to-end helpers: run the real trainer as processes on loopback, read its summary."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env(env=None):
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    full_env.pop("TF_CONFIG", None)
    full_env.update(env or {})
    return full_env


def run_command(argv, *, timeout=300, env=None):
    """Runs ``argv`` from the repository root; returns the CompletedProcess (text)."""
    return subprocess.run(
        argv, cwd=REPO, env=_env(env), capture_output=True, text=True, timeout=timeout
    )


def start_command(argv, log, *, env=None):
    """Starts ``argv`` from the repository root in a session of its own (so its whole
    process group can be signalled), stdout and stderr into the open file ``log``;
    ``env`` replaces the environment (default: this one's, without TF_CONFIG)."""
    return subprocess.Popen(
        argv,
        cwd=REPO,
        env=env if env is not None else _env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def run_side_by_side(commands, *, timeout=1200):
    """Starts every command at once from the repository root and waits for all of them.

    Args:
      commands: ``{name: (argv, env, log_path)}``; each run's stdout and stderr go to its
        ``log_path``, ``env`` is its whole environment.
      timeout: seconds each run may take, counted from its wait; a run past it is killed.

    Returns:
      One message per run that did not exit 0: its name, exit code (or "timeout") and the
      end of its log. Empty when every run succeeded.
    """
    started = {}
    for name, (argv, env, log_path) in commands.items():
        log = open(log_path, "w")
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        started[name] = (process, log, log_path)
    failures = []
    for name, (process, log, log_path) in started.items():
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = "timeout"
        log.close()
        if code != 0:
            failures.append(f"{name}: exit {code}\n{Path(log_path).read_text()[-3000:]}")
    return failures


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
