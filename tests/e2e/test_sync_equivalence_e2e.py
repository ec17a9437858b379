"""Synchronous data parallelism is exact: 2 workers end with the one-device weights."""

import keras
import numpy as np
from e2e_helpers import explain, run_trainer

COMMON = [
    "--optimizer=sgd",
    "--learning_rate=0.1",
    "--noshuffle",
    "--seed=7",
    "--global_batch_size=64",
    "--epochs=2",
    "--steps_per_epoch=12",
    "--steps_per_loop=5",
]


def _final_weights(tmp_path, *flags):
    model_dir = tmp_path / "model"
    process, summary = run_trainer(tmp_path, *flags, *COMMON, f"--model_dir={model_dir}")
    assert process.returncode == 0, explain(process)
    assert summary["steps"] == 24
    return [np.asarray(w) for w in keras.saving.load_model(model_dir / "model.keras").weights]


def test_two_workers_equal_one_device_after_24_sgd_steps(tmp_path):
    single = _final_weights(tmp_path / "one", "--strategy=one_device")
    multi = _final_weights(tmp_path / "multi", "--strategy=multi_worker", "--num_workers=2")
    moved = max(float(np.abs(a).max()) for a in single)
    assert moved > 0
    for a, b in zip(single, multi, strict=False):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
