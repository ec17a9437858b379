"""Stateful callbacks survive a kill: the restarted run ends where an uninterrupted one does.

``callbacks_resume_job.py`` trains under ``python -m launch --max_restarts=2`` with
EarlyStopping(patience=2, restore_best_weights), ModelCheckpoint(save_best_only),
ReduceLROnPlateau(patience=1) and a CSVLogger. Run once uninterrupted and, for each kill,
with a task killed (SIGKILL) in the middle of an epoch: after EarlyStopping started
waiting, or at a step drawn from a seed. The
restarted run's History holds every epoch (not the last life's), its CSV each epoch once,
and EarlyStopping and ReduceLROnPlateau decided over the whole run (replayed from its
val_loss as Keras' callbacks decide). Under ``multi_worker`` the resume is exact, so it
must also stop at the uninterrupted run's epoch with its History, learning rate and
predictions (1e-5); ``parameter_server``'s asynchronous updates make two runs differ.
"""

import csv
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from e2e_helpers import REPO

pytestmark = pytest.mark.e2e

JOB = os.path.join(REPO, "tests", "e2e", "callbacks_resume_job.py")
CLUSTERS = {
    "multi_worker": ["--strategy=multi_worker", "--num_workers=2"],
    "parameter_server": ["--strategy=parameter_server", "--num_workers=2", "--num_ps=1"],
}
# multi_worker: in epoch 9 (0-based 8), after epoch 8 left EarlyStopping waiting (1 of 2)
# and ReduceLROnPlateau's best behind: a fresh EarlyStopping would train on past epoch 9,
# a fresh ReduceLROnPlateau would not halve the rate there (the uninterrupted run:
# val_loss 0.291 ... 0.100, 0.105, 0.108; stopped at epoch 9). parameter_server: in epoch
# 5, since its asynchronous run may stop sooner. And a kill at a step of an epoch drawn
# from a seed (multi_worker, whose run is exact).
KILLS = [("multi_worker", "8:10"), ("multi_worker", "seed=1"), ("parameter_server", "4:10")]
STEPS_PER_EPOCH = 1200 // 40


def _kill_at(kill):
    """`EPOCH:BATCH` (0-based) for the job; `seed=S`: one drawn from the epochs before the
    uninterrupted multi_worker run's stop (epochs 2 to 9) and the epoch's steps."""
    if not kill.startswith("seed="):
        return kill
    draw = random.Random(int(kill.removeprefix("seed=")))
    return f"{draw.randrange(1, 9)}:{draw.randrange(STEPS_PER_EPOCH)}"


PATIENCE, FACTOR, LEARNING_RATE = 2, 0.5, 0.03
PLATEAU_MIN_DELTA = 1e-4  # ReduceLROnPlateau's default.


def _launch(out, cluster, *job_args, rerun=False):
    out.mkdir(exist_ok=rerun)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    env.pop("TF_CONFIG", None)
    argv = [sys.executable, "-m", "launch", *CLUSTERS[cluster], "--max_restarts=2", "--"]
    done = subprocess.run(
        argv + [sys.executable, JOB, str(out), *job_args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return json.loads((out / "result.json").read_text()), done.stdout + done.stderr


def _csv_rows(out):
    with open(out / "epochs.csv") as f:
        return list(csv.DictReader(f))


def _best_weights(out):
    import h5py

    arrays = []
    with h5py.File(out / "best.weights.h5") as f:
        f.visititems(lambda name, item: arrays.append(item[()]) if hasattr(item, "shape") else None)
    return arrays


def _keras_would(val_losses):
    """(epochs EarlyStopping(patience=2) lets run, the rate ReduceLROnPlateau(patience=1,
    factor=0.5) leaves), replayed over a whole run's val_loss as Keras' callbacks decide:
    EarlyStopping's min_delta is 0, ReduceLROnPlateau's 1e-4."""
    best_stop = best_plateau = float("inf")
    wait_stop = wait_plateau = 0
    rate = LEARNING_RATE
    for epoch, value in enumerate(val_losses):
        if value < best_plateau - PLATEAU_MIN_DELTA:
            best_plateau, wait_plateau = value, 0
        else:
            wait_plateau += 1
            if wait_plateau >= 1:
                rate, wait_plateau = rate * FACTOR, 0
        if value < best_stop:
            best_stop, wait_stop = value, 0
        else:
            wait_stop += 1
            if wait_stop >= PATIENCE:
                return epoch + 1, rate
    return len(val_losses), rate


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """`(result, out dir)` of a cluster's uninterrupted run, made once for its kills."""
    runs: dict = {}

    def run(cluster):
        if cluster not in runs:
            out = tmp_path_factory.mktemp(cluster) / "uninterrupted"
            runs[cluster] = _launch(out, cluster)[0], out
        return runs[cluster]

    return run


@pytest.mark.parametrize("cluster, kill", KILLS, ids=[f"{c}-{k}" for c, k in KILLS])
def test_a_killed_run_restarts_into_the_uninterrupted_runs_ending(
    tmp_path, uninterrupted, cluster, kill
):
    expected, expected_out = uninterrupted(cluster)
    got, output = _launch(tmp_path / "killed", cluster, _kill_at(kill))

    assert (tmp_path / "killed" / "killed").exists(), "the kill never came"
    assert "killed by SIGKILL" in output, output[-3000:]
    assert got["restored_from"], got  # The second life resumed from a checkpoint.
    epochs = len(got["history"]["loss"])
    assert sorted(got["history"]) == sorted(expected["history"])
    assert all(len(values) == epochs for values in got["history"].values())
    rows = _csv_rows(tmp_path / "killed")
    assert [int(row["epoch"]) for row in rows] == list(range(epochs))  # Each epoch once.
    # The History's epochs before the kill are the first life's, as its CSV rows wrote them.
    for key in ("loss", "val_loss"):
        logged = [float(row[key]) for row in rows]
        np.testing.assert_allclose(got["history"][key], logged, rtol=1e-6)
    assert (tmp_path / "killed" / "best.weights.h5").exists()
    # The callbacks decided over the whole run, the epochs before the kill included.
    stop_after, rate = _keras_would(got["history"]["val_loss"])
    assert epochs == stop_after
    assert got["learning_rate"] == pytest.approx(rate, rel=1e-6)
    # An asynchronous run may go on improving by a little each epoch and never stop early;
    # multi_worker is exact and stops at epoch 9, as its uninterrupted run does.
    if cluster == "multi_worker":  # Exact resume: the uninterrupted run's numbers.
        assert epochs == len(expected["history"]["loss"]) == 9
        assert got["stopped_epoch"] == expected["stopped_epoch"]
        for key, values in expected["history"].items():
            np.testing.assert_allclose(got["history"][key], values, rtol=1e-5, atol=1e-6)
        assert got["learning_rate"] == pytest.approx(expected["learning_rate"], rel=1e-6)
        np.testing.assert_allclose(got["predictions"], expected["predictions"], atol=1e-5)
        for row, want in zip(rows, _csv_rows(expected_out), strict=True):
            assert row.keys() == want.keys()
            for key in row:
                assert float(row[key]) == pytest.approx(float(want[key]), rel=1e-5, abs=1e-6)
        best, want = _best_weights(tmp_path / "killed"), _best_weights(expected_out)
        for got_array, want_array in zip(best, want, strict=True):
            np.testing.assert_allclose(got_array, want_array, rtol=1e-6, atol=1e-7)
    # The run stopped: the same command again trains nothing and says so.
    again, said = _launch(tmp_path / "killed", cluster, rerun=True)
    assert "holds a finished run: epoch " in said, said[-3000:]
    assert again["history"] == got["history"]
