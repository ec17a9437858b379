"""Local SGD and DiLoCo under multi_worker x2 as real processes: they learn, they stop on
SIGTERM at a synchronisation point, and the rerun ends with the uninterrupted weights."""

import os
import re
import signal
import sys
import time

import keras
import numpy as np
from e2e_helpers import explain, run_trainer, start_command

# 46 steps per epoch (not a multiple of 4: each epoch end is a synchronisation too).
JOB = [
    "--num_workers=2",
    "--sync_every=4",
    "--outer_optimizer=nesterov",
    "--seed=3",
    "--global_batch_size=32",
    "--epochs=12",
    "--steps_per_loop=3",
    "--checkpoint_every_steps=24",
]
TOTAL_STEPS = 12 * (1500 // 32)


def _weights(model_dir):
    return [np.asarray(w) for w in keras.saving.load_model(model_dir / "model.keras").weights]


def _latest_checkpoint(model_dir):
    names = os.listdir(model_dir / "checkpoints") if (model_dir / "checkpoints").exists() else []
    steps = [
        int(m.group(1)) for name in names for m in [re.match(r"ckpt-(\d+)\.index$", name)] if m
    ]
    return max(steps, default=0)


def test_diloco_two_workers_learn_and_resume_exactly_after_sigterm(tmp_path):
    reference_dir = tmp_path / "reference"
    process, summary = run_trainer(tmp_path / "ref_out", *JOB, f"--model_dir={reference_dir}")
    assert process.returncode == 0, explain(process)
    assert summary["steps"] == TOTAL_STEPS and summary["sync_every"] == 4
    assert summary["val_accuracy"] >= 0.9, summary["val_accuracy"]

    model_dir = tmp_path / "m"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    with open(tmp_path / "run.log", "w") as log:
        stopped = start_command(
            [sys.executable, "-m", "tfdist.train", *JOB, f"--model_dir={model_dir}"], log, env=env
        )
        deadline = time.time() + 240
        while _latest_checkpoint(model_dir) < 100 and time.time() < deadline:
            assert stopped.poll() is None, "the run ended before it could be interrupted"
            time.sleep(0.05)
        stopped.send_signal(signal.SIGTERM)  # The launcher forwards it to both workers.
        code = stopped.wait(timeout=120)
    output = (tmp_path / "run.log").read_text()
    assert code == 128 + signal.SIGTERM, output[-3000:]
    saved = re.findall(r"preempted \(SIGTERM\) at step (\d+): saved checkpoint", output)
    assert len(saved) == 2 and saved[0] == saved[1], output[-3000:]
    step = int(saved[0])
    assert step % 4 == 0 or step % 46 == 0, step  # A synchronisation point.

    rerun, resumed = run_trainer(tmp_path / "rerun_out", *JOB, f"--model_dir={model_dir}")
    assert rerun.returncode == 0, explain(rerun)
    assert resumed["restored_from"].endswith(f"ckpt-{step}")
    assert resumed["steps"] == TOTAL_STEPS
    for a, b in zip(_weights(reference_dir), _weights(model_dir), strict=False):
        np.testing.assert_array_equal(a, b)
