"""`python -m launch --strategy=parameter_server -- python my_script.py`, for real: the
user's script runs on the chief only and tfdist's servers on the ps and worker tasks; with
--servers=command the script runs on every task (and this one fails there)."""

import os
import sys

from e2e_helpers import REPO, explain, run_command

SCRIPT = os.path.join(REPO, "tests", "e2e", "ps_user_script.py")
LAUNCH = [
    sys.executable,
    "-m",
    "launch",
    "--strategy=parameter_server",
    "--num_workers=2",
    "--num_ps=1",
]
ENV = {"PYTHONPATH": REPO}


def test_the_script_runs_on_the_chief_and_tfdist_servers_on_the_other_tasks():
    process = run_command([*LAUNCH, "--", sys.executable, SCRIPT], env=ENV, timeout=240)

    assert process.returncode == 0, explain(process)
    assert "[chief:0] user script on chief: total 5.0 from workers [" in process.stdout
    for task in ("worker:0", "worker:1", "ps:0"):
        assert f"[{task}] tfdist.server: {task} serving on" in process.stdout, explain(process)
    assert "belongs on the chief only" not in process.stdout
    assert f"; servers run {sys.executable} -m tfdist.server; " in process.stderr


def test_servers_command_runs_the_script_on_every_task():
    process = run_command(
        [*LAUNCH, "--servers=command", "--", sys.executable, SCRIPT], env=ENV, timeout=240
    )

    assert process.returncode == 5, explain(process)
    assert "] user script on " in process.stdout, explain(process)  # A non-chief task ran it,
    assert ": it belongs on the chief only" in process.stdout  # and failed the launch (exit 5).
    assert "tfdist.server" not in process.stdout + process.stderr
