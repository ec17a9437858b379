"""Keras callbacks under ``tfdist.fit``: multi_worker ×2 and parameter_server, as processes.

``keras_callbacks_job.py`` runs one case per callback (EarlyStopping with
restore_best_weights, ReduceLROnPlateau, LearningRateScheduler, ModelCheckpoint,
CSVLogger, TerminateOnNaN, LambdaCallback, a user's Callback subclass) and each task
writes what it saw. Both clusters run at once through ``python -m launch``: under
``multi_worker`` every worker runs the callbacks and must take the same decisions;
under ``parameter_server`` the chief runs them.
"""

import csv
import json
import math
import os
import sys

import pytest
from e2e_helpers import REPO, run_side_by_side

JOB = os.path.join(REPO, "tests", "e2e", "keras_callbacks_job.py")
CLUSTERS = {
    "multi_worker": ["--strategy=multi_worker", "--num_workers=2"],
    "parameter_server": ["--strategy=parameter_server", "--num_workers=2", "--num_ps=1"],
}
TASKS = {"multi_worker": ["worker_0", "worker_1"], "parameter_server": ["chief_0"]}
STEPS = math.ceil(1350 / 32)  # 1,350 training examples (1,500 less the 10% validation
# split) at batch 32: 42 full batches and Keras' partial last one.
STEPS_PER_LOOP = 8


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{cluster: (output folder, [each task's record])}."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    env.pop("TF_CONFIG", None)
    outs = {cluster: tmp_path_factory.mktemp(cluster) for cluster in CLUSTERS}
    commands = {
        cluster: (
            [sys.executable, "-m", "launch", *flags, "--", sys.executable, JOB, str(outs[cluster])],
            env,
            outs[cluster] / "launch.log",
        )
        for cluster, flags in CLUSTERS.items()
    }
    failures = run_side_by_side(commands)
    records = {}
    for cluster, out in outs.items():
        if any(failure.startswith(f"{cluster}:") for failure in failures):
            continue
        text = (out / "launch.log").read_text()
        assert "Traceback" not in text, text[-3000:]  # TerminateOnNaN stops quietly too.
        records[cluster] = (
            out,
            [json.loads((out / f"{task}.json").read_text()) for task in TASKS[cluster]],
        )
    assert not failures, "\n".join(failures)
    return records


@pytest.fixture(params=list(CLUSTERS))
def cluster(request, runs):
    out, tasks = runs[request.param]
    assert [task["kind"] for task in tasks] == [request.param] * len(tasks)
    return request.param, out, tasks


def _flat(value):
    """A record's value as a flat list of numbers (dicts by sorted key), for approx."""
    if isinstance(value, dict):
        return [item for key in sorted(value) for item in [key, *_flat(value[key])]]
    if isinstance(value, list):
        return [item for element in value for item in _flat(element)]
    return [value]


def _same_on_every_worker(tasks, case, *keys):
    for key in keys:
        values = [_flat(task[case][key]) for task in tasks]
        assert all(value == pytest.approx(values[0], nan_ok=True) for value in values), (
            case,
            key,
            values,
        )


def test_early_stopping_stops_every_worker_at_the_same_epoch_and_restores_the_best(cluster):
    _, _, tasks = cluster
    for task in tasks:
        record = task["early_stopping"]
        # Epoch 0 is the best (val_accuracy never improves by min_delta=0.5); patience 2.
        assert record["stopped_epoch"] == 2
        assert len(record["history"]["loss"]) == 3 and len(record["sums"]) == 3
        assert record["final_sum"] == pytest.approx(record["sums"][0], rel=1e-6)
        assert record["final_sum"] != pytest.approx(record["sums"][-1], rel=1e-6)
    _same_on_every_worker(tasks, "early_stopping", "stopped_epoch", "history", "final_sum")


def test_reduce_lr_on_plateau_rate_is_seen_on_every_worker(cluster):
    _, _, tasks = cluster
    for task in tasks:
        record = task["reduce_lr"]
        # The loss never improves by 10: after epoch 0 sets the best, each epoch halves it.
        assert record["rates"] == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4, 1.25e-4])
        # Keras logs the rate an epoch ran at, then lowers it for the next one.
        assert record["history"]["learning_rate"] == pytest.approx(record["rates"])
    _same_on_every_worker(tasks, "reduce_lr", "rates", "history", "final_sum")


def test_learning_rate_scheduler_rate_is_used_by_every_worker(cluster):
    _, _, tasks = cluster
    for task in tasks:
        record = task["scheduler"]
        assert record["rates"] == pytest.approx([1e-3, 1e-3, 0.0, 0.0, 0.0])
        sums = record["sums"]
        assert sums[1] != pytest.approx(sums[0], rel=1e-6)  # Epochs at 1e-3 move weights.
        assert sums[2:] == pytest.approx([sums[1]] * 3, rel=1e-7)  # At rate 0 nothing moves.
    _same_on_every_worker(tasks, "scheduler", "sums")


def test_model_checkpoint_only_the_chief_writes_the_real_path(cluster):
    _, out, tasks = cluster
    import keras  # Imported here: the fixture's processes do the training.

    path = out / "checkpoint.keras"
    assert tasks[0]["checkpoint"]["filepath"] == str(path)
    for task in tasks[1:]:
        assert not task["checkpoint"]["filepath"].startswith(str(out)), task["checkpoint"]
    restored = keras.models.load_model(path)
    weights = sum(float(abs(w).sum()) for w in restored.get_weights())
    assert weights == pytest.approx(tasks[0]["checkpoint"]["final_sum"], rel=1e-6)


def test_csv_logger_only_the_chief_writes(cluster):
    _, out, tasks = cluster
    assert tasks[0]["csv_logger"]["opened"]
    assert not any(task["csv_logger"]["opened"] for task in tasks[1:])
    with open(out / "training.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    assert [float(row["loss"]) for row in rows] == pytest.approx(
        tasks[0]["csv_logger"]["history"]["loss"], rel=1e-5
    )
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(rows[0])


def test_terminate_on_nan_stops_training_without_a_traceback(cluster):
    _, _, tasks = cluster
    for task in tasks:
        record = task["terminate_on_nan"]
        assert record["stop_training"]
        assert len(record["history"]["loss"]) <= 1 < 5, record["history"]
        assert all(math.isnan(loss) for loss in record["history"]["loss"])
    _same_on_every_worker(tasks, "terminate_on_nan", "stop_training")


def test_lambda_callback_sees_every_epoch_with_keras_logs(cluster):
    _, _, tasks = cluster
    for task in tasks:
        seen = task["lambda_callback"]["seen"]
        assert seen["train_begin"] == 1 and seen["train_end"] == 1
        assert seen["epochs"] == [0, 1, 2]
        assert seen["keys"] == [["accuracy", "loss", "val_accuracy", "val_loss"]] * 3


def test_user_callback_sees_epoch_and_batch_hooks_with_sane_indices(cluster):
    name, _, tasks = cluster
    for task in tasks:
        record = task["user_callback"]
        assert record["model_is_set"]
        events = record["events"]
        assert events[0][0] == "train_begin" and events[-1][0] == "train_end"
        for epoch in (0, 1):
            begin = events.index(["epoch_begin", epoch, []])
            end = next(i for i, e in enumerate(events) if e[:2] == ["epoch_end", epoch])
            assert events[end][2] == ["accuracy", "loss", "val_accuracy", "val_loss"]
            batches = events[begin + 1 : end]
            # Keras' hooks: one begin and one end per call of STEPS_PER_LOOP steps
            # (steps_per_execution), the end index the call's first + STEPS_PER_LOOP - 1,
            # the last call's too, as Keras' fit gives them (under parameter_server a
            # call's steps may be scheduled in shorter pieces; its hooks stay Keras').
            begins = [e[1] for e in batches if e[0] == "batch_begin"]
            ends = [e[1] for e in batches if e[0] == "batch_end"]
            assert begins == list(range(0, STEPS, STEPS_PER_LOOP))
            assert ends == [b + STEPS_PER_LOOP - 1 for b in begins]
            # Its own on_train_batch_end: the metrics are read for every loop's logs.
            assert all(e[2] == ["accuracy", "loss"] for e in batches if e[0] == "batch_end")
            for first, last in zip(begins, ends, strict=False):  # A loop ends after it began.
                assert batches.index(["batch_begin", first, []]) < next(
                    i for i, e in enumerate(batches) if e[:2] == ["batch_end", last]
                )
            if name == "multi_worker":  # Sync: each loop ends before the next begins.
                assert [e[0] for e in batches] == ["batch_begin", "batch_end"] * len(begins)
            # parameter_server schedules an epoch's loops first, then ends them in order.
