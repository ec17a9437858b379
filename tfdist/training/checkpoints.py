"""Checkpoints and the exported model, with the chief/worker rules of tf.distribute.

Owns where each task writes: the chief keeps the real checkpoints under
``MODEL_DIR/checkpoints`` (``tf.train.CheckpointManager``) and exports
``MODEL_DIR/model.keras``; other MultiWorkerMirrored workers must take part in
every save (the save is collective) but write to a private temporary directory
that is deleted right after, as TensorFlow requires. Every task restores from
the chief's latest checkpoint, so a restarted run resumes where it stopped.
"""

from __future__ import annotations

import os
from typing import Optional

import tensorflow as tf

from tfdist.config import ConfigError
from tfdist.distribute.strategies import TaskRole

CHECKPOINT_SUBDIR = "checkpoints"
EXPORT_NAME = "model.keras"


class CheckpointKeeper:
    """Saves and restores one ``tf.train.Checkpoint`` for one task of a run."""

    def __init__(self, checkpoint: tf.train.Checkpoint, *, model_dir: str, role: TaskRole,
                 max_to_keep: int = 3):
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
                f"model_dir ({model_dir}) is not writable: {error.message}; "
                "pass a --model_dir this process can write.") from None
        self._manager = tf.train.CheckpointManager(checkpoint, self._write_dir,
                                                   max_to_keep=max_to_keep)

    def _candidates(self) -> list:
        """The chief's checkpoints, newest first."""
        state = tf.train.get_checkpoint_state(self.chief_dir)
        if state is None:
            return []
        paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
        paths = [p if os.path.isabs(p) else os.path.join(self.chief_dir, p) for p in paths]
        return list(reversed(paths))

    def restore_latest(self) -> Optional[str]:
        """Restores the chief's newest readable checkpoint, if any; returns its path.

        A corrupt or half-written newest checkpoint is skipped (with a warning) for the
        one before it; a checkpoint of another model is an error.
        """
        for path in self._candidates():
            try:
                tf.train.load_checkpoint(path)  # Reads the index: fails on damaged files.
            except (tf.errors.OpError, ValueError) as error:
                print(f"tfdist: warning: skipping unreadable checkpoint {path} "
                      f"({str(error).splitlines()[0][:120]}); trying the one before.",
                      flush=True)
                continue
            try:
                self._checkpoint.restore(path).expect_partial()
            except (tf.errors.DataLossError, IndexError) as error:  # IndexError: truncated data.
                print(f"tfdist: warning: skipping corrupt checkpoint {path} "
                      f"({str(error).splitlines()[0][:120]}); trying the one before.",
                      flush=True)
                continue
            except (tf.errors.OpError, ValueError, AssertionError) as error:
                raise ConfigError(
                    f"checkpoint {path} does not fit this model ({str(error).splitlines()[0]}); "
                    "use another --model_dir or delete that checkpoint.") from None
            return path
        return None

    def save(self, step: int) -> str:
        """Saves on every task (the save is collective); only the chief's copy is kept.

        TensorFlow writes the files under a temporary name and renames them, and the
        manager rewrites its ``checkpoint`` index only after that, so a crash while
        saving leaves the previous checkpoint as the newest one.
        """
        path = self._manager.save(checkpoint_number=step)
        if not self._role.is_chief:
            tf.io.gfile.rmtree(self._write_dir)
            tf.io.gfile.makedirs(self._write_dir)
            return os.path.join(self.chief_dir, os.path.basename(path))
        return path


    @property
    def latest(self) -> Optional[str]:
        """The chief's newest checkpoint."""
        return tf.train.latest_checkpoint(self.chief_dir)

    def close(self) -> None:
        """Removes a non-chief task's temporary directory; the chief's checkpoints stay."""
        if not self._role.is_chief and tf.io.gfile.exists(self._write_dir):
            tf.io.gfile.rmtree(self._write_dir)


def export_model(model, model_dir: str) -> str:
    """Writes the final model as ``MODEL_DIR/model.keras``; call it on the chief only."""
    path = os.path.join(model_dir, EXPORT_NAME)
    model.save(path)
    return path
