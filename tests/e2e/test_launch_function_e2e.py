"""tfdist.launch runs a Python function as a local cluster of real processes and returns
the chief's result: multi_worker x2, parameter_server (2 workers, 1 ps), a failing task,
and a function defined in a script's __main__ (sent by value), quietly."""

import io
import json
import os
import sys
import textwrap
import time

import pytest
from e2e_helpers import REPO, explain, run_command

import tfdist
from launch.noise import is_noise

STEPS = 8


def train_digits(kind, steps):
    """Builds the mlp under the task's strategy and trains `steps` steps with tfdist.Trainer."""
    import keras

    import tfdist
    from tfdist.data.pipeline import load_source, make_dataset_fn

    distribution = tfdist.make_strategy(kind, cluster=tfdist.read_tf_config())
    source = load_source("digits")
    keras.utils.set_random_seed(0)
    with distribution.scope():
        model = tfdist.build_model(
            "mlp", input_shape=source.input_shape, num_classes=source.num_classes
        )
        model.compile(
            optimizer=keras.optimizers.Adam(3e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    trainer = tfdist.Trainer(distribution, model, tfdist.LoopConfig(steps_per_loop=4))
    history = trainer.fit(
        make_dataset_fn(source, "train", global_batch_size=64, training=True),
        epochs=2,
        steps_per_epoch=steps,
        global_batch_size=64,
    )
    return {
        "losses": history.history["loss"],
        "step": history.final_step,
        "kind": distribution.kind,
        "task": json.loads(os.environ["TF_CONFIG"])["task"],
    }


def fail_on_worker_1():
    """worker:1 raises; worker:0 would wait forever if the launcher did not stop it."""
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    if task["index"] == 1:
        raise ValueError("boom on worker 1")
    time.sleep(3600)


def test_multi_worker_function_returns_the_chiefs_final_loss():
    output = io.StringIO()
    result = tfdist.launch(
        train_digits, "multi_worker", STEPS, strategy="multi_worker", num_workers=2, output=output
    )
    assert result["task"] == {"type": "worker", "index": 0}, result  # The chief's result.
    assert result["kind"] == "multi_worker" and result["step"] == 2 * STEPS
    assert result["losses"][-1] < result["losses"][0], result
    assert "tfdist.launch: starting multi_worker cluster: worker:0 at localhost:" in (
        output.getvalue()
    )


def test_parameter_server_function_runs_on_the_chief_with_servers():
    output = io.StringIO()
    result = tfdist.launch(
        train_digits,
        "parameter_server",
        STEPS,
        strategy="parameter_server",
        num_workers=2,
        num_ps=1,
        output=output,
    )
    assert result["task"] == {"type": "chief", "index": 0}, result
    assert result["kind"] == "parameter_server" and result["step"] == 2 * STEPS
    assert result["losses"][-1] < result["losses"][0], result
    for task in ("worker:0", "worker:1", "ps:0"):
        assert f"[{task}] tfdist.server: {task} serving on" in output.getvalue()


def test_a_failing_task_raises_one_error_naming_it_and_stops_the_others():
    output = io.StringIO()
    with pytest.raises(tfdist.LaunchFailed) as raised:
        tfdist.launch(fail_on_worker_1, num_workers=2, output=output)
    failed = raised.value
    assert (failed.task, failed.exit_code) == ("worker:1", 1)
    assert str(failed).startswith(
        "tfdist.launch: task worker:1 failed (exit code 1); the "
        "other tasks were stopped. Its last lines:"
    )
    assert "ValueError: boom on worker 1" in str(failed)
    assert isinstance(failed.__cause__, ValueError) and "boom" in str(failed.__cause__)
    worker_0 = next(task for task in failed.result.tasks if task.name == "worker:0")
    assert worker_0.stopped, failed.result.summary()  # Stopped, not waited for.
    assert "[worker:1] ValueError: boom on worker 1" in output.getvalue()


def test_a_function_of_a_scripts_main_runs_by_value_without_start_up_noise(tmp_path):
    script = tmp_path / "my_script.py"
    script.write_text(
        textwrap.dedent("""
        import json
        import tfdist

        class Answer:  # A __main__ class: the result comes back by value too.
            def __init__(self, value):
                self.value = value

        def double(x):
            import tensorflow as tf
            return Answer(float(tf.reduce_sum(tf.fill([x], 2.0))))

        if __name__ == "__main__":
            print("RESULT", json.dumps(tfdist.launch(double, 21, num_workers=2).value))
    """)
    )
    process = run_command([sys.executable, str(script)], env={"PYTHONPATH": REPO})
    assert process.returncode == 0, explain(process)
    assert "RESULT 42.0" in process.stdout
    lines = (process.stdout + process.stderr).splitlines()
    noise = [line for line in lines if is_noise(line.split("] ", 1)[-1])]
    assert noise == [], noise


def workers_seen(marker):
    """worker:2 of a 3-worker cluster fails, and worker:1 fails once (the `marker` file)."""
    import pathlib

    config = json.loads(os.environ["TF_CONFIG"])
    workers, index = len(config["cluster"]["worker"]), config["task"]["index"]
    if index == 1 and not pathlib.Path(marker).exists():
        pathlib.Path(marker).touch()
        raise RuntimeError("worker:1 fails on the first attempt")
    if workers == 3 and index == 2:
        raise RuntimeError("worker:2 cannot run")
    return workers


def test_launch_restarts_and_goes_on_with_fewer_workers(tmp_path):
    output = io.StringIO()

    workers = tfdist.launch(
        workers_seen,
        str(tmp_path / "failed_once"),
        num_workers=3,
        max_restarts=1,
        min_workers=2,
        output=output,
    )

    assert workers == 2, output.getvalue()[-3000:]
    text = output.getvalue()
    assert "restarting the cluster (1/1)" in text
    assert "going on without it with 2 of 3 workers" in text


def test_launch_without_restarts_fails_at_the_first_failure(tmp_path):
    with pytest.raises(tfdist.LaunchFailed, match="worker:1 fails on the first attempt"):
        tfdist.launch(
            workers_seen, str(tmp_path / "failed_once"), num_workers=2, output=io.StringIO()
        )
