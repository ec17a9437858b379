"""A user's functional model with dict inputs and a custom loss, 2 workers, Python API."""

import io
import json
import os
import sys

from e2e_helpers import REPO

from launch import plan_local_cluster, plan_local_launch, run_local


def test_dict_input_model_with_custom_loss_trains_under_multi_worker(tmp_path):
    cluster = plan_local_cluster(strategy="multi_worker", num_workers=2)
    script = os.path.join(REPO, "tests", "e2e", "custom_model_job.py")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    launches = plan_local_launch(
        cluster=cluster,
        strategy="multi_worker",
        command=[sys.executable, script, str(tmp_path)],
        base_env=env,
    )
    output = io.StringIO()
    result = run_local(launches, output=output)
    assert result.exit_code == 0, result.summary() + output.getvalue()[-3000:]
    workers = [json.loads((tmp_path / f"worker_{i}.json").read_text()) for i in range(2)]
    for worker in workers:
        assert worker["num_replicas"] == 2 and worker["final_step"] == 120
        assert worker["losses"][-1] < 0.6 * worker["losses"][0], worker
        assert worker["accuracies"][-1] > 0.85, worker
    # Synchronous training: both workers hold the same weights and saw the same totals.
    assert workers[0]["weights_sum"] == workers[1]["weights_sum"]
    assert workers[0]["losses"] == workers[1]["losses"]
