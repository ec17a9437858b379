"""Runs the whole programs of this folder one after another under one strategy.

Usage: ``python programs_job.py OUT_DIR MODE [PROGRAM ...]``

MODE ``keras`` is the reference: each program calls `model.fit` / `model.evaluate` on
one device, with no strategy. Any other MODE builds TensorFlow's own strategy object, as
a user would (``one_device``: `OneDeviceStrategy`; ``mirrored``: `MirroredStrategy` over
two logical CPUs; ``multi_worker``: `MultiWorkerMirroredStrategy` from TF_CONFIG, every
worker runs this; ``parameter_server``: the PS tutorial's `ParameterServerStrategy`, on
the chief), hands it to each program, and the programs call `tfdist.fit` /
`tfdist.evaluate` in place of `model.fit` / `model.evaluate`: the one call changed.

Each task writes ``OUT_DIR/<MODE>_<task type>_<task index>.json``:
``{program: {"history": ..., "test": ..., ...}}``, or ``{"refused": line}`` where tfdist
refused the program with a ConfigError, or ``{"crashed": traceback}`` (under
``multi_worker`` a crash ends the task instead: its peer would wait for it).
"""

import importlib
import inspect
import json
import os
import sys
import traceback

if len(sys.argv) < 3:
    sys.exit(__doc__)
OUT_DIR, MODE = sys.argv[1], sys.argv[2]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfdist  # noqa: E402

SEED = 1234
PROGRAMS = [
    "multi_worker_tutorial",
    "ps_tutorial",
    "text_classification",
    "feature_space",
    "py_dataset",
    "vae",
]


def make_strategy(mode):
    """TensorFlow's own strategy object for `mode`, built as a user builds it."""
    if mode == "keras":
        return tf.distribute.get_strategy()
    if mode == "one_device":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    if mode == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if mode == "parameter_server":
        return importlib.import_module("ps_tutorial").make_strategy()
    raise SystemExit(f"MODE {mode!r} is not one of keras, one_device, mirrored, ...")


def front_door(mode):
    """(fit, evaluate): Keras' own methods for `keras`, tfdist's functions otherwise."""
    if mode == "keras":
        return (
            lambda model, *args, **kwargs: model.fit(*args, verbose=0, **kwargs),
            lambda model, *args, **kwargs: model.evaluate(*args, verbose=0, **kwargs),
        )
    return (
        lambda model, *args, **kwargs: tfdist.fit(model, *args, verbose=0, **kwargs),
        lambda model, *args, **kwargs: tfdist.evaluate(model, *args, verbose=0, **kwargs),
    )


def plain(value):
    """JSON-ready: floats for numbers and NumPy scalars, lists kept."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, (bool, str)) or value is None:
        return value
    return float(value)


def run_program(name, strategy, fit, evaluate, working_dir):
    program = importlib.import_module(name)
    offered = {"strategy": strategy, "fit": fit, "evaluate": evaluate, "working_dir": working_dir}
    wanted = inspect.signature(program.run).parameters
    keras.utils.set_random_seed(SEED)
    try:
        return plain(program.run(**{key: offered[key] for key in wanted}))
    except tfdist.ConfigError as error:
        return {"refused": str(error)}
    except Exception:
        if MODE == "multi_worker":  # Its peer would wait in a collective: end the task.
            raise
        return {"crashed": traceback.format_exc()[-3000:]}  # For the test to show.


def task_name():
    if "TF_CONFIG" not in os.environ or MODE in ("keras", "one_device", "mirrored"):
        return "chief_0"
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    return f"{task['type']}_{task['index']}"


def main():
    names = sys.argv[3:] or PROGRAMS
    strategy = make_strategy(MODE)
    fit, evaluate = front_door(MODE)
    name = f"{MODE}_{task_name()}"
    results = {}
    for program in names:
        working_dir = os.path.join(OUT_DIR, name, program)
        os.makedirs(working_dir, exist_ok=True)
        results[program] = run_program(program, strategy, fit, evaluate, working_dir)
        summary = {key: value for key, value in results[program].items() if key != "history"}
        print(name, program, json.dumps(summary)[:2000], flush=True)
    with open(os.path.join(OUT_DIR, f"{name}.json"), "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
