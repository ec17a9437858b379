"""Ctrl-C is a preemption for a user's own script: `tfdist.fit` saves at the next step
boundary, says so in one line, exits 130 without a traceback, and the rerun resumes there.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
from e2e_helpers import REPO

pytestmark = pytest.mark.e2e

SCRIPT = """
import sys
import keras
import numpy as np
import tfdist

model_dir = sys.argv[1]
x = np.random.default_rng(0).normal(size=(512, 8)).astype("float32")
y = (x.sum(axis=1) > 0).astype("int64")
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dense(2)])
model.compile(optimizer="adam", metrics=["accuracy"],
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
history = tfdist.fit(model, x, y, batch_size=8, epochs=400, verbose=0, model_dir=model_dir,
                     checkpoint_every_steps=16)
print("restored_from", history.restored_from, "final_step", history.final_step, flush=True)
"""
TOTAL_STEPS = 400 * 64


def _start(script, model_dir, log):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    env.pop("TF_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, str(script), str(model_dir)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _newest_checkpoint(model_dir):
    index = model_dir / "checkpoints" / "checkpoint"
    if not index.exists():
        return None
    first = index.read_text().splitlines()[0]  # model_checkpoint_path: "ckpt-N"
    return int(first.rsplit("-", 1)[1].rstrip('"'))


def _wait_for_a_checkpoint(model_dir, process, after=0, timeout=180):
    """Until the newest checkpoint is past step `after`: the script is in its fit."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        newest = _newest_checkpoint(model_dir)
        if newest is not None and newest > after:
            return
        assert process.poll() is None, "the script ended before its first checkpoint"
        time.sleep(0.2)
    raise AssertionError("no checkpoint within the timeout")


def test_ctrl_c_saves_says_one_line_and_the_rerun_resumes_there(tmp_path):
    script, model_dir = tmp_path / "train.py", tmp_path / "m"
    script.write_text(SCRIPT)
    with open(tmp_path / "first.log", "w") as log:
        process = _start(script, model_dir, log)
        _wait_for_a_checkpoint(model_dir, process)
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=120)
    output = (tmp_path / "first.log").read_text()

    assert code == 128 + signal.SIGINT, output[-3000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
    said = [line for line in output.splitlines() if "interrupted (SIGINT)" in line]
    assert len(said) == 1 and said[0].startswith("tfdist.fit: interrupted (SIGINT) at step "), said
    step = int(said[0].split(" at step ")[1].split(":")[0])
    assert 0 < step < TOTAL_STEPS
    assert said[0].endswith(
        f"saved checkpoint {model_dir}/checkpoints/ckpt-{step}; rerun the same command to resume."
    )

    with open(tmp_path / "rerun.log", "w") as log:
        rerun = _start(script, model_dir, log)
        _wait_for_a_checkpoint(model_dir, rerun, after=step)  # It resumed and trained on.
        rerun.send_signal(signal.SIGINT)
        assert rerun.wait(timeout=180) == 128 + signal.SIGINT
    again = (tmp_path / "rerun.log").read_text()
    resumed = [line for line in again.splitlines() if "interrupted (SIGINT)" in line]
    assert len(resumed) == 1, again[-3000:]
    assert int(resumed[0].split(" at step ")[1].split(":")[0]) > step
