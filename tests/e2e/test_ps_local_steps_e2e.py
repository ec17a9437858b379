"""Local steps on parameter_server workers (`--sync_every`), as real processes: the ps
receives one update per round of a worker's steps, counted on the ps; the run learns as
plain parameter_server does; a SIGTERM stops it at a checkpoint and the rerun ends at the
planned step, its count of updates carried on; pushes of two workers at once all land,
each as a share of their average (tfdist.training.ps_local_steps)."""

import io
import json
import os
import re
import signal
import sys
import time

import pytest
from e2e_helpers import REPO, explain, run_command, run_trainer, start_command

from launch import plan_local_cluster, plan_local_launch, run_local

CLUSTER = ["--strategy=parameter_server", "--num_workers=2", "--num_ps=1"]
EPOCHS = 10
STEPS = EPOCHS * (1500 // 64)  # digits: 1,500 training examples, global batch 64.
H = 8
PUSH_JOB = os.path.join(REPO, "tests", "e2e", "ps_push_job.py")


def test_a_worker_updates_the_ps_once_a_round_and_the_run_learns(tmp_path):
    process, summary = run_trainer(tmp_path, *CLUSTER, f"--sync_every={H}", f"--epochs={EPOCHS}")
    assert process.returncode == 0, explain(process)
    assert summary["steps"] == STEPS and sum(summary["steps_by_worker"]) == STEPS
    # Rounds of 8 steps; shorter only where an epoch of 23 steps ends.
    assert STEPS / H <= summary["ps_updates"] <= STEPS / H * 1.25, summary["ps_updates"]
    assert summary["val_accuracy"] >= 0.93, summary["val_accuracy"]


def test_a_sigterm_stops_at_a_checkpoint_and_the_rerun_ends_at_the_planned_step(tmp_path):
    model_dir = tmp_path / "m"
    job = [*CLUSTER, f"--sync_every={H}", "--outer_optimizer=nesterov", f"--epochs={EPOCHS}"]
    job += ["--outer_learning_rate=0.5", "--checkpoint_every_steps=20", f"--model_dir={model_dir}"]
    with open(tmp_path / "run.log", "w") as log:
        stopped = start_command([sys.executable, "-m", "tfdist.train", *job], log)
        deadline = time.time() + 240
        while not list(model_dir.glob("checkpoints/ckpt-*.index")) and time.time() < deadline:
            assert stopped.poll() is None, "the run ended before it could be stopped"
            time.sleep(0.05)
        stopped.send_signal(signal.SIGTERM)
        code = stopped.wait(timeout=120)
    output = (tmp_path / "run.log").read_text()
    assert code == 128 + signal.SIGTERM, output[-3000:]
    saved = re.search(r"preempted \(SIGTERM\) at step (\d+): saved checkpoint", output)
    assert saved, output[-3000:]
    step = int(saved.group(1))

    rerun, resumed = run_trainer(tmp_path / "out", *job)
    assert rerun.returncode == 0, explain(rerun)
    assert resumed["restored_from"].endswith(f"ckpt-{step}")
    assert resumed["steps"] == STEPS and sum(resumed["steps_by_worker"]) == STEPS
    # Calls are cut at each checkpoint step too (every 20): more short rounds.
    assert STEPS / H <= resumed["ps_updates"] <= STEPS / H * 1.5, resumed["ps_updates"]
    assert resumed["val_accuracy"] >= 0.9, resumed["val_accuracy"]


def test_tfdist_fit_takes_sync_every_under_parameter_server(tmp_path):
    """The same through the front door: a user's script, `tfdist.fit(sync_every=8)`, whose
    LearningRateScheduler reaches the workers' own optimizers."""
    script = os.path.join(REPO, "tests", "e2e", "ps_local_steps_fit_job.py")
    launch = [sys.executable, "-m", "launch", *CLUSTER, "--", sys.executable, script]
    done = run_command([*launch, str(tmp_path)], env={"PYTHONPATH": REPO})
    assert done.returncode == 0, explain(done)
    result = json.loads((tmp_path / "result.json").read_text())
    steps = 8 * (1500 // 50)  # 8 epochs of 30 steps, in calls of 16 (steps_per_execution).
    assert result["final_step"] == steps
    # Rounds of 8: whole in each call of 16, and an epoch's last call of 14 ends in one of 6.
    assert result["ps_updates"] == 8 * 4, result
    assert result["val_accuracy"] >= 0.85, result  # It learns (0.886 in one run).
    # The workers' copies take the model optimizer's rate: 0 in the last epoch, no change.
    sums = result["weight_sums"]
    assert sums[-3] != sums[-2] == sums[-1], sums


def test_the_outer_optimizer_steps_the_ps_weights(tmp_path):
    """One worker (its rounds in order): outer SGD at rate 1 without momentum adds each
    round's change as it is, as `none` does; at rate 0.5 it moves the weights half way."""
    one = ["--strategy=parameter_server", "--num_workers=1", "--num_ps=1", f"--sync_every={H}"]
    losses = {}
    for name, outer in {
        "none": [],
        "sgd 1": ["--outer_optimizer=sgd", "--outer_learning_rate=1", "--outer_momentum=0"],
        "sgd 0.5": ["--outer_optimizer=sgd", "--outer_learning_rate=0.5", "--outer_momentum=0"],
    }.items():
        out = tmp_path / name.replace(" ", "_")
        out.mkdir()
        process, summary = run_trainer(out, *one, "--epochs=2", *outer)
        assert process.returncode == 0, explain(process)
        losses[name] = summary["val_loss"]
    assert losses["sgd 1"] == losses["none"] != losses["sgd 0.5"], losses


def _push_rounds(tmp_path, workers, outer, momentum):
    """What `ps_push_job.py` reports: 40 rounds of a change of exactly 1, pushed."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    env.pop("TF_CONFIG", None)
    report = tmp_path / "report.json"
    launches = plan_local_launch(
        cluster=plan_local_cluster(strategy="parameter_server", num_workers=workers, num_ps=1),
        strategy="parameter_server",
        command=[sys.executable, PUSH_JOB, outer, str(momentum), str(report)],
        server_command=[sys.executable, "-m", "tfdist.server"],
        base_env=env,
    )
    output = io.StringIO()
    result = run_local(launches, output=output)
    assert result.exit_code == 0, result.summary() + output.getvalue()[-4000:]
    found = json.loads(report.read_text())
    assert found["pushes"] == 40, found
    assert min(found["rounds_by_worker"]) > 0, found
    return found


@pytest.mark.parametrize("outer", ["none", "sgd"])
def test_pushes_of_two_workers_at_once_all_land_as_shares_of_an_average(tmp_path, outer):
    """40 rounds, each changing every weight by exactly 1, pushed by 2 workers at once:
    each push adds 1/2, so the weights move by 20 and no push is lost (Keras' assign_add,
    a read then a write, lost the pushes that landed in between). Outer SGD at rate 1
    without momentum moves them as `none` does."""
    found = _push_rounds(tmp_path, 2, outer, 0.0)
    assert all(abs(moved - 20.0) < 1e-4 for moved in found["moved"]), found


@pytest.mark.parametrize("outer", ["sgd", "nesterov"])
def test_the_outer_momentum_on_the_ps_is_sgds_or_nesterovs(tmp_path, outer):
    """One worker's 40 rounds in turn, each a change of 1, with outer momentum 0.5 at rate 1:
    the weights move as the outer step replayed here says (SGD 78.0, Nesterov 79.0)."""
    velocity = expected = 0.0
    for _ in range(40):
        velocity = 0.5 * velocity - 1.0  # The change is the negated gradient.
        expected -= -1.0 + 0.5 * velocity if outer == "nesterov" else velocity
    found = _push_rounds(tmp_path, 1, outer, 0.5)
    assert all(abs(moved - expected) < 1e-3 for moved in found["moved"]), (expected, found)
