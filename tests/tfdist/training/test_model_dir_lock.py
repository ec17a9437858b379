"""One writer per model_dir: a second run gets one line naming the first; a dead holder's
lock is free at once (tfdist.training.model_dir_lock)."""

import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import tfdist
from tfdist.config import ConfigError
from tfdist.training.model_dir_lock import LOCK_NAME, ModelDirLock

_HOLD = """
import sys, time
from tfdist.training.model_dir_lock import ModelDirLock
with ModelDirLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def held_elsewhere(tmp_path):
    """A process holding tmp_path/m's lock, as a run training there would."""
    model_dir = tmp_path / "m"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(model_dir)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    yield model_dir, holder
    holder.kill()
    holder.wait()


def test_a_second_writer_gets_one_line_naming_the_first(held_elsewhere):
    model_dir, holder = held_elsewhere

    with pytest.raises(ConfigError) as refused:
        with ModelDirLock(str(model_dir)):
            pass

    message = str(refused.value)
    assert "\n" not in message
    assert f"model_dir ({model_dir}) is being written by another run (pid {holder.pid} on " in (
        message
    )
    assert "pass another model_dir" in message


def test_a_killed_holders_lock_is_taken_over(held_elsewhere):
    model_dir, holder = held_elsewhere
    holder.send_signal(signal.SIGKILL)
    holder.wait()

    with ModelDirLock(str(model_dir)) as lock:
        record = (model_dir / LOCK_NAME).read_text()
        assert record.startswith(f"pid {os.getpid()} on ")
    assert lock._file is None


def test_the_lock_is_let_go_when_the_run_ends(tmp_path):
    with ModelDirLock(str(tmp_path)):
        pass
    with ModelDirLock(str(tmp_path)):
        pass


def test_an_object_store_path_is_not_locked():
    with ModelDirLock("gs://bucket/run") as lock:
        assert lock._file is None


def test_tfdist_fit_refuses_a_model_dir_another_run_writes(held_elsewhere):
    model_dir, holder = held_elsewhere
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((8, 3), np.float32), np.zeros((8, 1), np.float32)
    started = time.time()

    with pytest.raises(ConfigError, match=rf"another run \(pid {holder.pid} on "):
        tfdist.fit(model, x, y, model_dir=str(model_dir), verbose=0)

    assert time.time() - started < 60
    assert not (model_dir / "checkpoints").exists() or not os.listdir(model_dir / "checkpoints")
    tfdist.fit(model, x, y, model_dir=str(model_dir.parent / "other"), verbose=0)
