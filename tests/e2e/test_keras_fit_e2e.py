"""Keras' example models trained with ``tfdist.fit`` under all four strategies, as processes.

``keras_models_job.py`` trains five of its models in sequence. It runs five times, at
once: plain Keras ``model.fit`` on one device with no strategy (the reference), then ``tfdist.fit``
under ``one_device`` and ``mirrored`` (two logical CPUs) in one process each, and under
``multi_worker`` (2 workers) and ``parameter_server`` (2 workers, 1 ps) through
``python -m launch``. Each model must reach what Keras' fit reaches on one device on the
held-out digits within 2 accuracy points (10% of the loss for the regression model),
with the History keys Keras' fit gives. Alongside, ``keras_eval_job.py`` checks that
``tfdist.evaluate`` and ``tfdist.predict`` count each of 1,001 examples exactly once at
global batch 64 (which does not divide it) under ``multi_worker`` ×2 and
``parameter_server``.
"""

import json
import os
import sys

import pytest
from e2e_helpers import REPO, run_side_by_side

JOB = os.path.join(REPO, "tests", "e2e", "keras_models_job.py")
EVAL_JOB = os.path.join(REPO, "tests", "e2e", "keras_eval_job.py")
# The job's convnet and text models are left to test_keras_programs_e2e.py (a PyDataset's
# convnet; TextVectorization in tf.data and in the model), which runs them as whole programs.
MODELS = ["mlp", "batchnorm", "two_outputs", "regression", "subclassed"]
STRATEGIES = ["one_device", "mirrored", "multi_worker", "parameter_server"]
RESULT_FILES = {
    "keras": ["keras_chief_0"],
    "one_device": ["one_device_worker_0"],
    "mirrored": ["mirrored_worker_0"],
    "multi_worker": ["multi_worker_worker_0", "multi_worker_worker_1"],
    "parameter_server": ["parameter_server_chief_0"],
    "eval_multi_worker": ["eval/worker_0", "eval/worker_1"],
    "eval_parameter_server": ["eval_ps/chief_0"],
}
# One process per run: they share 2 cores, so each uses one thread, as launched tasks do.
IN_PROCESS = ("keras", "one_device", "mirrored")
ACCURACY = {
    "mlp": "accuracy",
    "convnet": "accuracy",
    "batchnorm": "accuracy",
    "text": "accuracy",
    "two_outputs": "digit_accuracy",
    "subclassed": "accuracy",
}


def _commands(out):
    job = [sys.executable, JOB, str(out)]
    models = list(MODELS)
    launch = [sys.executable, "-m", "launch"]
    multi_worker = launch + ["--strategy=multi_worker", "--num_workers=2", "--"]
    parameter_server = launch + [
        "--strategy=parameter_server",
        "--num_workers=2",
        "--num_ps=1",
        "--",
    ]
    return {
        "keras": job + ["keras", *models],
        "one_device": job + ["one_device", *models],
        "mirrored": job + ["mirrored", *models],
        "multi_worker": multi_worker + job + ["auto", *models],
        "parameter_server": parameter_server + job + ["auto", *models],
        "eval_multi_worker": multi_worker + [sys.executable, EVAL_JOB, str(out / "eval")],
        "eval_parameter_server": parameter_server
        + [sys.executable, EVAL_JOB, str(out / "eval_ps")],
    }


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """{run: [results of each task]}: the five runs side by side (2 cores: they share)."""
    out = tmp_path_factory.mktemp("keras_models")
    (out / "eval").mkdir()
    (out / "eval_ps").mkdir()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    env.pop("TF_CONFIG", None)
    one_thread = dict(env, TF_NUM_INTRAOP_THREADS="1")
    commands = {
        run: (argv, one_thread if run in IN_PROCESS else env, out / f"{run}.log")
        for run, argv in _commands(out).items()
    }
    failures = run_side_by_side(commands)
    assert not failures, "\n".join(failures)
    return {
        run: [json.loads((out / f"{name}.json").read_text()) for name in names]
        for run, names in RESULT_FILES.items()
    }


def _expects_refusal(strategy, model):
    return strategy == "parameter_server" and model == "subclassed"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_model_reaches_what_keras_fit_reaches_on_one_device(results, strategy, model):
    reference = results["keras"][0][model]
    for task in results[strategy]:
        got = task[model]
        if _expects_refusal(strategy, model):
            assert "error" in got, got
            continue
        assert "error" not in got, got["error"]
        if model == "regression":
            assert got["test"]["loss"] == pytest.approx(reference["test"]["loss"], rel=0.10)
            assert got["test"]["mae"] == pytest.approx(reference["test"]["mae"], rel=0.10)
        else:
            key = ACCURACY[model]
            assert reference["test"][key] > 0.9, reference  # The reference itself converged.
            assert got["test"][key] == pytest.approx(reference["test"][key], abs=0.02), (
                got["test"],
                reference["test"],
            )
        assert sorted(got["history"]) == sorted(reference["history"])
        assert sorted(got["test"]) == sorted(reference["test"])
        epochs = len(reference["history"]["loss"])
        assert all(len(values) == epochs for values in got["history"].values())


def test_the_two_outputs_model_logs_each_output_as_keras_does(results):
    keys = sorted(results["keras"][0]["two_outputs"]["history"])
    assert keys == sorted(
        f"{prefix}{name}"
        for prefix in ("", "val_")
        for name in ("loss", "digit_loss", "parity_loss", "digit_accuracy", "parity_accuracy")
    )
    for strategy in STRATEGIES:
        assert sorted(results[strategy][0]["two_outputs"]["history"]) == keys, strategy


def test_multi_worker_workers_end_with_the_same_history(results):
    first, second = results["multi_worker"]
    for model in MODELS:
        assert sorted(first[model]["history"]) == sorted(second[model]["history"]), model
        for key, values in first[model]["history"].items():
            assert values == pytest.approx(second[model]["history"][key], rel=1e-6), (model, key)
        assert first[model]["test"] == pytest.approx(second[model]["test"], rel=1e-6), model


def test_own_train_step_under_parameter_server_is_refused_in_one_line(results):
    message = results["parameter_server"][0]["subclassed"]["error"]
    assert "\n" not in message
    assert "train_step" in message and "parameter_server" in message
    assert "compute_loss" in message and "multi_worker" in message  # The two ways out.


@pytest.mark.parametrize("cluster", ["multi_worker", "parameter_server"])
def test_evaluate_counts_each_example_once_when_the_batch_does_not_divide(results, cluster):
    tasks = results[f"eval_{cluster}"]
    for task in tasks:
        assert task["evaluate"]["loss"] == pytest.approx(task["numpy"]["loss"], abs=1e-5)
        assert task["evaluate"]["accuracy"] == pytest.approx(task["numpy"]["accuracy"], abs=1e-5)
        # Trained: an off-by-one batch or a duplicated example would move these.
        assert task["numpy"]["accuracy"] > 0.3  # 10 classes: chance is 0.1.
    assert tasks[0]["evaluate"] == tasks[-1]["evaluate"]


@pytest.mark.parametrize("cluster", ["multi_worker", "parameter_server"])
def test_predict_returns_every_example_once_in_order(results, cluster):
    for task in results[f"eval_{cluster}"]:
        assert task["predict_shape"] == [1001, 10]
        assert task["predict_max_difference"] < 1e-5
