"""A full disk under --model_dir: the job ends in one line, nothing saved is damaged, a rerun
resumes.

Each test mounts a small tmpfs (the suite runs as root in CI) and leaves on it just the
room a run needs up to a chosen write: a step checkpoint, or the final ``model.keras``.
That write fails with "no space left on device"; the trainer must end with one
``tfdist.train: error:`` line that names the step, the path, the reason and the newest
complete checkpoint, and a non-zero exit (under multi_worker x2: the root-cause task, as
the launcher's summary quotes it; which copy of a save fails first is a race, so either
worker's line is accepted). The checkpoints written before must be as an
uninterrupted run wrote them, and once the ballast file is deleted the same command
resumes from the newest complete checkpoint and ends with the uninterrupted weights.
"""

import os
import re
import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf
from e2e_helpers import explain, run_trainer

STEPS_PER_EPOCH = 1500 // 32
JOB = [
    "--optimizer=sgd",
    "--learning_rate=0.05",
    "--seed=5",
    "--global_batch_size=32",
    "--steps_per_loop=4",
    "--keep_checkpoints=10",
]
EVERY = 20  # Step checkpoints 20 and 40 fall inside epoch 1 (46 steps), not on its end.
ONE_PROCESS = ["--strategy=one_device"]
# Two workers: each save writes the chief's checkpoint and worker:1's temporary copy.
TWO_WORKERS = ["--strategy=multi_worker", "--num_workers=2"]
_TF_NOISE = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl)")
_PAGE = 4096


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs mounted at tmp_path/disk (unmounted after), or a skip where mounting is refused."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs here ({mounted.stderr.strip()}); needs root"
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail(f"{reason}: CI runs as root, so this test must run there")
        pytest.skip(reason)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _size(paths):
    """Bytes the files take on a tmpfs: each rounded up to whole pages."""
    return sum(-(-os.path.getsize(p) // _PAGE) * _PAGE for p in paths)


def _checkpoint_size(model_dir, step):
    return _size(
        model_dir / "checkpoints" / name
        for name in os.listdir(model_dir / "checkpoints")
        if name.startswith(f"ckpt-{step}.")
    )


def _tree_size(directory):
    return _size(
        os.path.join(root, name) for root, _, names in os.walk(directory) for name in names
    )


def _leave_free(disk, free_bytes):
    """Fills `disk` with a ballast file until exactly about `free_bytes` remain."""
    stats = os.statvfs(disk)
    ballast = stats.f_bavail * stats.f_frsize - free_bytes
    assert ballast > 0, (stats, free_bytes)
    with open(disk / "ballast", "wb") as f:
        f.write(b"\0" * ballast)
    return disk / "ballast"


def _error_line(process):
    """The one line the trainer ends with; TensorFlow's start-up log lines aside."""
    assert "Traceback" not in process.stderr, process.stderr[-4000:]
    lines = [
        line for line in process.stderr.splitlines() if line.strip() and not _TF_NOISE.match(line)
    ]
    assert len(lines) == 1, lines
    return lines[0]


def _weights(model_dir):
    return [np.asarray(w) for w in keras.saving.load_model(model_dir / "model.keras").weights]


def _tensors(path):
    reader = tf.train.load_checkpoint(str(path))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def _same_weights(expected, actual):
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual, strict=False):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def _task_error_line(process):
    """A launched cluster: the root-cause task's last line, as the launcher's summary quotes it.

    The other worker, cut off in its next collective, may print TensorFlow's lost-peer
    traceback before the launcher stops it; the root cause must end in one line.
    """
    found = re.search(
        r"^task (worker:\d) failed .*\(root cause\).*\n(?:.*\n)*?last \d+ log "
        r"lines? of \1:\n((?:  .*\n?)+)",
        process.stderr,
        re.M,
    )
    assert found, explain(process)
    tail = [line.strip() for line in found.group(2).splitlines()]
    assert "Traceback" not in "\n".join(tail), tail
    return tail[-1]


@pytest.mark.parametrize("strategy", [ONE_PROCESS, TWO_WORKERS], ids=["one_device", "multi_worker"])
def test_a_checkpoint_that_does_not_fit_ends_the_job_and_a_rerun_resumes(
    tmp_path, small_disk, strategy
):
    flags = [*strategy, *JOB, "--epochs=3", f"--checkpoint_every_steps={EVERY}"]
    copies = 2 if strategy is TWO_WORKERS else 1
    first, second = EVERY, 2 * EVERY
    reference_dir = tmp_path / "reference"
    reference, summary = run_trainer(tmp_path, *flags, f"--model_dir={reference_dir}")
    assert reference.returncode == 0, explain(reference)
    total = summary["steps"]
    checkpoint = _checkpoint_size(reference_dir, first)
    # TensorBoard's files grow with the steps; by the second save they hold about this much.
    others = _tree_size(reference_dir / "tensorboard") * second // total + 2 * _PAGE
    # Room for the first save (all its copies), then for less than the second one's.
    ballast = _leave_free(small_disk, copies * checkpoint + checkpoint // 2 + others)
    model_dir = small_disk / "m"

    failed, _ = run_trainer(tmp_path / "failed", *flags, f"--model_dir={model_dir}")

    assert failed.returncode == 1, explain(failed)
    line = _error_line(failed) if copies == 1 else _task_error_line(failed)
    print("full disk:", line)
    if copies == 1:
        expected_line = (
            rf"checkpoint at step {second} could not be written to "
            rf"{model_dir}/checkpoints/ckpt-{second}"
        )
    else:  # Which copy fails first is a race (the chief's, worker:1's, or, seen by the
        # chief, a peer's), and so is which save: the ballast leaves room for about one and
        # a half checkpoints, so the step or the epoch-end save after the first may fail.
        expected_line = (
            rf"(?:checkpoint at step (\d+) could not be written to "
            rf"{model_dir}/checkpoints/ckpt-\d+|this task's copy of the "
            rf"checkpoint at step (\d+) could not be written to "
            rf"{model_dir}/\.tmp/worker_1/ckpt-\d+|another task's copy of "
            rf"the checkpoint at step (\d+) could not be written to "
            rf"{model_dir}/\.tmp)"
        )
    found = re.match(
        rf"tfdist\.train: error: {expected_line}: no space left on device; the "
        rf"newest complete checkpoint is {model_dir / 'checkpoints'}/ckpt-(\d+), "
        "unchanged",
        line,
    )
    assert found, line
    newest = int(found.groups()[-1])
    failed_at = second if copies == 1 else int(next(g for g in found.groups()[:-1] if g))
    assert newest == first if copies == 1 else first <= newest <= failed_at, line
    # With two workers the chief may still complete its own copy after worker:1 reported.
    latest = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    assert latest.endswith(f"ckpt-{newest}") or (
        copies == 2 and latest.endswith(f"ckpt-{failed_at}")
    ), latest
    newest = int(latest.rpartition("-")[2])
    saved = _tensors(model_dir / "checkpoints" / f"ckpt-{newest}")
    expected = _tensors(reference_dir / "checkpoints" / f"ckpt-{newest}")
    assert saved.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(saved[name], expected[name], err_msg=name)
    assert not (model_dir / "model.keras").exists()

    os.remove(ballast)
    rerun, resumed = run_trainer(tmp_path / "rerun", *flags, f"--model_dir={model_dir}")
    assert rerun.returncode == 0, explain(rerun)
    assert resumed["restored_from"].endswith(f"ckpt-{newest}"), resumed["restored_from"]
    assert resumed["steps"] == total
    _same_weights(_weights(reference_dir), _weights(model_dir))


def test_a_model_that_does_not_fit_ends_the_job_and_a_rerun_exports_it(tmp_path, small_disk):
    flags = [*ONE_PROCESS, *JOB, "--epochs=1"]
    reference_dir = tmp_path / "reference"
    reference, summary = run_trainer(tmp_path, *flags, f"--model_dir={reference_dir}")
    assert reference.returncode == 0, explain(reference)
    step = summary["steps"]
    exported = _size([reference_dir / "model.keras"])
    needed = _checkpoint_size(reference_dir, step) + _tree_size(reference_dir / "tensorboard")
    ballast = _leave_free(small_disk, needed + exported // 2 + 2 * _PAGE)
    model_dir = small_disk / "m"

    failed, _ = run_trainer(tmp_path / "failed", *flags, f"--model_dir={model_dir}")

    assert failed.returncode == 1, explain(failed)
    line = _error_line(failed)
    print("full disk:", line)
    assert line.startswith(
        f"tfdist.train: error: the final model could not be written to "
        f"{model_dir / 'model.keras'}: no space left on device; the newest "
        f"complete checkpoint is {model_dir / 'checkpoints'}/ckpt-{step}, "
        "unchanged"
    ), line
    kept = sorted(name for name in os.listdir(model_dir) if name != ".tfdist.lock")
    assert kept == ["checkpoints", "tensorboard"]  # No partial file (the lock is the run's).

    os.remove(ballast)
    rerun, resumed = run_trainer(tmp_path / "rerun", *flags, f"--model_dir={model_dir}")
    assert rerun.returncode == 0, explain(rerun)
    assert resumed["restored_from"].endswith(f"ckpt-{step}"), resumed["restored_from"]
    assert resumed["steps"] == step
    _same_weights(_weights(reference_dir), _weights(model_dir))
