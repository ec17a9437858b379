"""CheckpointKeeper on real files: the newest readable checkpoint is restored, a damaged
newest one is skipped with a warning, keep_checkpoints is honoured, workers write apart."""

import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from tfdist.config import ConfigError
from tfdist.distribute.strategies import TaskRole
from tfdist.training.checkpoints import CheckpointKeeper

CHIEF = TaskRole("chief", 0, True)
WORKER = TaskRole("worker", 1, False)


def _keeper(model_dir, *, role=CHIEF, max_to_keep=3, value=0.0):
    variable = tf.Variable(value)
    keeper = CheckpointKeeper(
        tf.train.Checkpoint(v=variable),
        model_dir=str(model_dir),
        role=role,
        max_to_keep=max_to_keep,
    )
    return keeper, variable


def _save_steps(model_dir, steps, **kwargs):
    keeper, variable = _keeper(model_dir, **kwargs)
    for step in steps:
        variable.assign(float(step))
        keeper.save(step)
    return keeper


def _files(model_dir):
    return sorted(os.listdir(os.path.join(model_dir, "checkpoints")))


def test_restores_the_newest(tmp_path):
    _save_steps(tmp_path, [1, 2, 3])
    keeper, variable = _keeper(tmp_path)

    path = keeper.restore_latest()

    assert path == str(tmp_path / "checkpoints" / "ckpt-3") == keeper.latest
    assert variable.numpy() == 3.0


def test_nothing_to_restore_in_a_fresh_model_dir(tmp_path):
    keeper, variable = _keeper(tmp_path, value=7.0)

    assert keeper.restore_latest() is None and keeper.latest is None
    assert variable.numpy() == 7.0


@pytest.mark.parametrize("damage", ["garbage_data", "truncated_data", "garbage_index"])
def test_a_damaged_newest_checkpoint_is_skipped_for_the_one_before(tmp_path, damage, caplog):
    _save_steps(tmp_path, [1, 2, 3])
    newest = tmp_path / "checkpoints" / "ckpt-3"
    if damage == "garbage_data":  # A crash while writing left this behind.
        (tmp_path / "checkpoints" / "ckpt-3.data-00000-of-00001").write_bytes(b"\0garbage" * 16)
    elif damage == "truncated_data":
        data = tmp_path / "checkpoints" / "ckpt-3.data-00000-of-00001"
        data.write_bytes(data.read_bytes()[:2])
    else:
        (tmp_path / "checkpoints" / "ckpt-3.index").write_bytes(b"not an index")
    keeper, variable = _keeper(tmp_path)

    with caplog.at_level(logging.WARNING):
        path = keeper.restore_latest()

    assert path == str(tmp_path / "checkpoints" / "ckpt-2")
    assert variable.numpy() == 2.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"checkpoint {newest} (" in warnings[0]
    assert warnings[0].startswith("skipping ") and warnings[0].endswith("; trying the one before")


def test_every_checkpoint_damaged_restores_nothing(tmp_path):
    _save_steps(tmp_path, [1, 2])
    for name in _files(tmp_path):
        if ".index" in name:
            (tmp_path / "checkpoints" / name).write_bytes(b"not an index")
    keeper, variable = _keeper(tmp_path, value=9.0)

    assert keeper.restore_latest() is None and variable.numpy() == 9.0


def test_a_checkpoint_of_another_model_is_an_error_naming_it(tmp_path):
    _save_steps(tmp_path, [1])
    other = CheckpointKeeper(
        tf.train.Checkpoint(v=tf.Variable(np.zeros([2, 2], np.float32))),
        model_dir=str(tmp_path),
        role=CHIEF,
    )

    with pytest.raises(
        ConfigError,
        match=r"^checkpoint .*ckpt-1 does not fit this model "
        r"\(.+\); use another model_dir or delete",
    ):
        other.restore_latest()


@pytest.mark.parametrize("keep", [1, 2, 4])
def test_keep_checkpoints_keeps_the_newest_ones(tmp_path, keep):
    _save_steps(tmp_path, [1, 2, 3, 4, 5], max_to_keep=keep)

    kept = sorted({name.split(".")[0] for name in _files(tmp_path) if name.startswith("ckpt-")})
    state = tf.train.get_checkpoint_state(str(tmp_path / "checkpoints"))

    assert kept == sorted(f"ckpt-{step}" for step in range(6 - keep, 6))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == [
        f"ckpt-{step}" for step in range(6 - keep, 6)
    ]


def test_a_worker_writes_to_a_private_directory_and_reads_the_chiefs(tmp_path):
    _save_steps(tmp_path, [4])
    keeper, variable = _keeper(tmp_path, role=WORKER)
    private = tmp_path / ".tmp" / "worker_1"

    assert keeper.restore_latest() == str(tmp_path / "checkpoints" / "ckpt-4")
    assert variable.numpy() == 4.0
    variable.assign(5.0)
    path = keeper.save(5)  # Collective in a real cluster; only the chief's copy is kept.

    assert path == str(tmp_path / "checkpoints" / "ckpt-5")
    assert private.is_dir() and not list(private.iterdir())
    assert not any(name.startswith("ckpt-5") for name in _files(tmp_path))
    keeper.close()
    assert not private.exists()


def test_an_unwritable_model_dir_says_so(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")

    with pytest.raises(
        ConfigError,
        match=r"^model_dir \(.*a_file/sub\) is not writable: .+; "
        r"pass a model_dir this process can write\.$",
    ):
        _keeper(blocker / "sub")
