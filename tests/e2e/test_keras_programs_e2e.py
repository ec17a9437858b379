"""Whole Keras programs with one call changed, under all four strategies, against Keras' fit.

The programs in ``programs/`` are TensorFlow's and keras.io's as they are written (the
multi-worker tutorial, the parameter-server tutorial's `Model.fit` part, text
classification with a TextVectorization map in tf.data, FeatureSpace on a dict of
columns, a PyDataset, a VAE with only `train_step`), on offline digits, with
`model.fit(...)` → `tfdist.fit(model, ...)` (and `evaluate` alike). Each builds its model
in the scope of TensorFlow's own strategy object (`programs_job.py`). They run at once:
plain Keras on one device (the reference), `OneDeviceStrategy` and `MirroredStrategy` (2
logical CPUs) in one process each, `MultiWorkerMirroredStrategy` ×2 and the PS tutorial's
`ParameterServerStrategy` (2 workers, 1 ps) under ``python -m launch``. And the
multi-worker tutorial's main.py as its own script, twice: under ``python -m launch`` ×2,
and as two processes given hand-written TF_CONFIGs.

Each program must end within 2 accuracy points of Keras' one-device fit (10% of the loss
where it has no accuracy), with Keras' History keys and epochs, or be refused in one line
as docs/trainer.md says (a model's own `train_step` under `parameter_server`).
"""

import json
import os
import sys

import pytest
from e2e_helpers import REPO, run_side_by_side

from launch.tf_config import free_ports

pytestmark = pytest.mark.e2e

PROGRAMS_DIR = os.path.join(REPO, "tests", "e2e", "programs")
JOB = os.path.join(PROGRAMS_DIR, "programs_job.py")
TUTORIAL = os.path.join(PROGRAMS_DIR, "multi_worker_tutorial.py")
PROGRAMS = ["multi_worker_tutorial", "ps_tutorial", "text_classification"]
PROGRAMS += ["feature_space", "py_dataset", "vae"]
STRATEGIES = ["one_device", "mirrored", "multi_worker", "parameter_server"]
RESULT_FILES = {
    "keras": ["keras_chief_0"],
    "one_device": ["one_device_chief_0"],
    "mirrored": ["mirrored_chief_0"],
    "multi_worker": ["multi_worker_worker_0", "multi_worker_worker_1"],
    "parameter_server": ["parameter_server_chief_0"],
}
IN_PROCESS = ("keras", "one_device", "mirrored")
# What each program is judged by: (where, key, tolerance); "abs" for accuracy points,
# "rel" for a loss.
MEASURES = {
    "multi_worker_tutorial": [("history", "accuracy", ("abs", 0.02))],
    "ps_tutorial": [("history", "loss", ("rel", 0.10))],
    "text_classification": [
        ("test", "binary_accuracy", ("abs", 0.02)),
        ("test", "loss", ("rel", 0.10)),
    ],
    "feature_space": [("test", "accuracy", ("abs", 0.02))],
    "py_dataset": [("test", "accuracy", ("abs", 0.02))],
    "vae": [("history", "loss", ("rel", 0.10))],
}
REFUSED = {("parameter_server", "vae")}  # docs/trainer.md: own train_step under PSS.


def _hand_written_tf_configs():
    """Two TF_CONFIGs for the tutorial's two workers, as its text writes them."""
    ports = free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    return [
        json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        for index in range(2)
    ]


def _commands(out):
    launch = [sys.executable, "-m", "launch"]
    multi_worker = launch + ["--strategy=multi_worker", "--num_workers=2", "--"]
    parameter_server = launch + ["--strategy=parameter_server", "--num_workers=2"]
    parameter_server += ["--num_ps=1", "--"]
    job = [sys.executable, JOB, str(out)]
    commands = {mode: (job + [mode], {}) for mode in ("keras", "one_device", "mirrored")}
    commands["multi_worker"] = (multi_worker + job + ["multi_worker"], {})
    commands["parameter_server"] = (parameter_server + job + ["parameter_server"], {})
    tutorial = [sys.executable, TUTORIAL]
    commands["tutorial_launch"] = (multi_worker + tutorial + [str(out / "launch")], {})
    for index, tf_config in enumerate(_hand_written_tf_configs()):
        commands[f"tutorial_by_hand_{index}"] = (
            tutorial + [str(out / "by_hand")],
            {"TF_CONFIG": tf_config},
        )
    return commands


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """{run: [each task's results]}, and the tutorial's own runs: all at once (2 cores)."""
    out = tmp_path_factory.mktemp("keras_programs")
    for folder in ("launch", "by_hand"):
        (out / folder).mkdir()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=f"{REPO}:{PROGRAMS_DIR}")
    env.pop("TF_CONFIG", None)
    commands = {}
    for run, (argv, extra_env) in _commands(out).items():
        run_env = dict(env, **extra_env)
        if run in IN_PROCESS or run.startswith("tutorial_by_hand"):
            run_env["TF_NUM_INTRAOP_THREADS"] = "1"
        commands[run] = (argv, run_env, out / f"{run}.log")
    failures = run_side_by_side(commands)
    assert not failures, "\n".join(failures)
    found = {
        run: [json.loads((out / f"{name}.json").read_text()) for name in names]
        for run, names in RESULT_FILES.items()
    }
    for run in ("launch", "by_hand"):
        found[f"tutorial_{run}"] = [
            json.loads((out / run / f"tutorial_worker_{index}.json").read_text())
            for index in range(2)
        ]
    return found


def _value(result, where, key):
    return result[where][key][-1] if where == "history" else result[where][key]


def _close(got, expected, tolerance):
    kind, amount = tolerance
    if kind == "abs":
        return abs(got - expected) <= amount
    return abs(got - expected) <= amount * abs(expected)


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_program_reaches_what_keras_fit_reaches_on_one_device(results, strategy, program):
    reference = results["keras"][0][program]
    assert "crashed" not in reference and "refused" not in reference, reference
    for task in results[strategy]:
        got = task[program]
        assert "crashed" not in got, got["crashed"]
        if (strategy, program) in REFUSED:
            assert "refused" in got, got
            assert "\n" not in got["refused"] and "train_step" in got["refused"]
            continue
        assert "refused" not in got, got["refused"]
        for where, key, tolerance in MEASURES[program]:
            expected, value = _value(reference, where, key), _value(got, where, key)
            assert _close(value, expected, tolerance), (where, key, value, expected)
        assert sorted(got["history"]) == sorted(reference["history"])
        epochs = len(reference["history"]["loss"])
        assert all(len(values) == epochs for values in got["history"].values())
        if "test" in reference:
            assert sorted(got["test"]) == sorted(reference["test"])


@pytest.mark.parametrize("strategy", ["keras", *STRATEGIES])
def test_ps_tutorial_callbacks_write_as_in_keras(results, strategy):
    """TensorBoard writes its logs, ModelCheckpoint its file, and BackupAndRestore deletes
    its backup once fit ends, as in Keras."""
    got = results[strategy][0]["ps_tutorial"]
    assert got["checkpoint_written"] is True
    assert got["tensorboard_files"] >= 1
    assert got["backup_left"] is False


@pytest.mark.parametrize("run", ["tutorial_launch", "tutorial_by_hand"])
def test_multi_worker_tutorial_script_trains_as_keras_does(results, run):
    """The tutorial's main.py itself: TF_CONFIG read by the script, TensorFlow's own
    MultiWorkerMirroredStrategy, `.repeat()` with `steps_per_epoch=70`, 3 epochs."""
    reference = results["keras"][0]["multi_worker_tutorial"]["history"]
    first, second = results[run]
    assert first == second  # Both workers report the same History.
    assert sorted(first["history"]) == sorted(reference)
    assert len(first["history"]["loss"]) == 3
    assert first["history"]["accuracy"][-1] == pytest.approx(reference["accuracy"][-1], abs=0.02)


def test_multi_worker_workers_end_every_program_alike(results):
    first, second = results["multi_worker"]
    for program in PROGRAMS:
        assert first[program].get("test") == second[program].get("test"), program
        assert first[program]["history"] == second[program]["history"], program
