"""The CLI trains the user's own model and data by import path as a launched cluster: every
worker process imports the user's modules (from PYTHONPATH) and the data is sharded."""

import textwrap

from e2e_helpers import REPO, explain, run_trainer


def test_own_model_and_arrays_under_two_workers(tmp_path):
    (tmp_path / "my_models.py").write_text(
        textwrap.dedent("""
        import keras

        def build_model(input_shape, num_classes):
            return keras.Sequential([keras.Input(shape=input_shape),
                                     keras.layers.Dense(32, activation="relu"),
                                     keras.layers.Dense(num_classes)], name="my_net")
    """)
    )
    (tmp_path / "my_data.py").write_text(
        textwrap.dedent("""
        import numpy as np

        def load_arrays():
            rng = np.random.default_rng(0)
            x = rng.normal(size=(1280, 5)).astype("float32")
            y = (x[:, 0] + x[:, 1] > 0).astype("int64")
            return x[:1024], y[:1024], x[1024:], y[1024:]
    """)
    )
    process, summary = run_trainer(
        tmp_path,
        "--strategy=multi_worker",
        "--num_workers=2",
        "--model=my_models:build_model",
        "--dataset=my_data:load_arrays",
        "--epochs=5",
        "--global_batch_size=64",
        env={"PYTHONPATH": f"{tmp_path}:{REPO}"},
    )
    assert process.returncode == 0, explain(process)
    assert (summary["num_workers"], summary["num_replicas"]) == (2, 2)
    assert summary["dataset"] == "my_data:load_arrays"
    assert summary["steps"] == 5 * 1024 // 64  # One pass per epoch over both workers' parts.
    assert summary["val_accuracy"] >= 0.9, summary  # A linear rule the model learns.
