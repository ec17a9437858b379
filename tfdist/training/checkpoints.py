"""Checkpoints and the exported model, with the chief/worker rules of tf.distribute.

Owns where each task writes: the chief keeps the real checkpoints under
`MODEL_DIR/checkpoints` (`tf.train.CheckpointManager`) and exports
`MODEL_DIR/model.keras`; other MultiWorkerMirrored workers must take part in
every save (the save is collective) but write to a private temporary directory
that is deleted right after, as TensorFlow requires. Every task restores from
the chief's latest checkpoint, so a restarted run resumes where it stopped.
"""

from __future__ import annotations

import errno
import os

import tensorflow as tf
from absl import logging

from tfdist.config import ConfigError
from tfdist.distribute.strategies import TaskRole
from tfdist.tf_errors import tf_reason

CHECKPOINT_SUBDIR = "checkpoints"
EXPORT_NAME = "model.keras"
_EXPORT_TEMP_NAME = ".model.keras-partial.keras"  # Keras insists on the .keras ending.


class CheckpointWriteError(RuntimeError):
    """A checkpoint or the exported model could not be written (a full disk, say).

    The message is one line: what was being written (the step), the path, why, and the
    newest complete checkpoint, which the failed write left as it was.
    """


def _write_error(
    what: str, path: str, error: BaseException, newest: str | None
) -> CheckpointWriteError:
    full = isinstance(error, tf.errors.ResourceExhaustedError) or getattr(error, "errno", None) in (
        errno.ENOSPC,
        errno.EDQUOT,
    )
    if full:
        reason = "no space left on device"
    elif isinstance(error, tf.errors.OpError):
        reason = tf_reason(error)
    else:
        reason = getattr(error, "strerror", None) or str(error).splitlines()[0]
    resume = (
        f"the newest complete checkpoint is {newest}, unchanged; free space, then rerun "
        "the same command to resume from it"
        if newest
        else "there is no complete checkpoint yet; free space, then rerun the same command"
    )
    return CheckpointWriteError(f"{what} could not be written to {path}: {reason}; {resume}.")


class CheckpointKeeper:
    """Saves and restores one `tf.train.Checkpoint` for one task of a run."""

    def __init__(
        self,
        checkpoint: tf.train.Checkpoint,
        *,
        model_dir: str,
        role: TaskRole,
        max_to_keep: int = 3,
    ):
        self._checkpoint = checkpoint
        self._role = role
        self.chief_dir = os.path.join(model_dir, CHECKPOINT_SUBDIR)
        if role.is_chief:
            self._write_dir = self.chief_dir
        else:
            self._write_dir = os.path.join(model_dir, ".tmp", f"{role.type}_{role.index}")
        try:
            tf.io.gfile.makedirs(self._write_dir)
        except tf.errors.OpError as error:
            raise ConfigError(
                f"model_dir ({model_dir}) is not writable: {tf_reason(error)}; "
                "pass a model_dir this process can write."
            ) from None
        self._manager = tf.train.CheckpointManager(
            checkpoint, self._write_dir, max_to_keep=max_to_keep
        )

    def _candidates(self) -> list:
        """The chief's checkpoints, newest first."""
        state = tf.train.get_checkpoint_state(self.chief_dir)
        if state is None:
            return []
        paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
        paths = [p if os.path.isabs(p) else os.path.join(self.chief_dir, p) for p in paths]
        return list(reversed(paths))

    def restore_latest(self) -> str | None:
        """Restores the chief's newest readable checkpoint, if any; returns its path.

        A corrupt or half-written newest checkpoint is skipped (with a warning) for the
        one before it; a checkpoint of another model is an error.
        """
        for path in self._candidates():
            try:
                tf.train.load_checkpoint(path)  # Reads the index: fails on damaged files.
            except (tf.errors.OpError, ValueError) as error:
                logging.warning(
                    "skipping unreadable checkpoint %s (%s); trying the one before",
                    path,
                    tf_reason(error)[:120],
                )
                continue
            try:
                self._checkpoint.restore(path).expect_partial()
            except (tf.errors.DataLossError, IndexError) as error:  # IndexError: truncated data.
                logging.warning(
                    "skipping corrupt checkpoint %s (%s); trying the one before",
                    path,
                    tf_reason(error)[:120],
                )
                continue
            except (tf.errors.OpError, ValueError, AssertionError) as error:
                raise ConfigError(
                    f"checkpoint {path} does not fit this model ({tf_reason(error)}); "
                    "use another model_dir or delete that checkpoint."
                ) from None
            return path
        return None

    def save(self, step: int) -> str:
        """Saves on every task (the save is collective); only the chief's copy is kept.

        TensorFlow writes the files under a temporary name and renames them, and the
        manager rewrites its `checkpoint` index only after that, so a crash while
        saving leaves the previous checkpoint as the newest one.
        """
        try:
            path = self._manager.save(checkpoint_number=step)
        except (tf.errors.OpError, OSError) as error:
            prefix = os.path.join(self._write_dir, f"ckpt-{step}")
            if tf.io.gfile.exists(prefix + "_temp"):  # TensorFlow's half-written shards.
                tf.io.gfile.rmtree(prefix + "_temp")
            newest, what = self.latest, f"checkpoint at step {step}"
            if not self._role.is_chief:
                what = f"this task's copy of the checkpoint at step {step}"
            elif newest and os.path.basename(newest) == f"ckpt-{step}":
                # Ours is complete: under multi_worker the save also writes each peer's copy
                # (on its device, in its .tmp folder), and one of those failed.
                what = f"another task's copy of the checkpoint at step {step}"
                prefix = os.path.join(os.path.dirname(self.chief_dir), ".tmp")
            raise _write_error(what, prefix, error, newest) from None
        if not self._role.is_chief:
            tf.io.gfile.rmtree(self._write_dir)
            tf.io.gfile.makedirs(self._write_dir)
            return os.path.join(self.chief_dir, os.path.basename(path))
        return path

    @property
    def latest(self) -> str | None:
        """The chief's newest checkpoint."""
        return tf.train.latest_checkpoint(self.chief_dir)

    def close(self) -> None:
        """Removes a non-chief task's temporary directory; the chief's checkpoints stay."""
        if not self._role.is_chief and tf.io.gfile.exists(self._write_dir):
            tf.io.gfile.rmtree(self._write_dir)


def export_model(model, model_dir: str) -> str:
    """Writes the final model as `MODEL_DIR/model.keras`; call it on the chief only.

    The model is written under a temporary name and renamed, so a write that fails (a
    full disk) leaves no half-written `model.keras` and an older one as it was.

    Raises:
        CheckpointWriteError: If the model cannot be written.
    """
    path = os.path.join(model_dir, EXPORT_NAME)
    partial = os.path.join(model_dir, _EXPORT_TEMP_NAME)
    try:
        model.save(partial)
        tf.io.gfile.rename(partial, path, overwrite=True)
    except (tf.errors.OpError, OSError) as error:
        if tf.io.gfile.exists(partial):
            tf.io.gfile.remove(partial)
        newest = tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINT_SUBDIR))
        raise _write_error("the final model", path, error, newest) from None
    return path
