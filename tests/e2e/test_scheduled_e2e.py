"""A parameter-server worker lost between its step and the copy of the step's result.

TensorFlow's ``RemoteValue.fetch`` raises ``UnavailableError`` into the training loop in
that window (seen in CI: the chief of a parameter_server run died and the whole cluster
restarted); ``tfdist.distribute.coordinator.fetch_result`` waits for the coordinator's re-run
instead.
``lost_copy_job.py`` makes the window certain on a real cluster.
"""

import io
import json
import os
import sys

from e2e_helpers import REPO

from launch import RestartPolicy, plan_local_cluster, plan_local_launch, run_local

SCRIPT = os.path.join(REPO, "tests", "e2e", "lost_copy_job.py")


def test_a_result_lost_before_its_copy_is_fetched_from_the_rerun(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    env.pop("TF_CONFIG", None)
    report = tmp_path / "report.json"
    cluster = plan_local_cluster(strategy="parameter_server", num_workers=1, num_ps=1)
    launches = plan_local_launch(
        cluster=cluster,
        strategy="parameter_server",
        command=[sys.executable, SCRIPT, str(report)],
        server_command=[sys.executable, "-m", "tfdist.server"],
        base_env=env,
    )
    output = io.StringIO()
    result = run_local(launches, output=output, restarts=RestartPolicy(max_restarts=2))
    assert result.exit_code == 0, result.summary() + output.getvalue()[-4000:]
    found = json.loads(report.read_text())
    assert found["warm_up"] == 7.0
    assert found["plain_fetch"] == "UnavailableError"  # The race was made: TF's fetch fails.
    assert found["fetch_result"] == 7.0  # fetch_result got the re-run's result.
    assert found["step_runs"] >= 3  # Warm-up, the lost step and at least its re-run.
    assert "worker:0 exited with code -9; restarting it (2/2)" in output.getvalue()
