"""TensorBoard output of a run: scalar summaries and a profiler trace.

Owns what goes under `MODEL_DIR/tensorboard`: the run `train` (loss,
accuracy, learning_rate and the trainer's metrics each epoch; examples_per_sec
and seconds_per_step each compiled loop) and the run `validation` (loss,
accuracy each epoch), all at the optimizer step, written with
`tf.summary.create_file_writer`; and, with `profile_steps`, a TensorFlow
profiler trace of the loops that cover those steps, under
`train/plugins/profile` where TensorBoard's Profile tab finds it.

Scalars are written as tensors of TensorBoard's scalars plugin with TensorFlow
alone, so writing needs no `tensorboard` package (viewing does). Which task
writes is the caller's choice; only the chief should (`job` does so).
"""

from __future__ import annotations

import os

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from tfdist.config import ConfigError, check_profile_steps
from tfdist.training.callbacks import Callback, LoopLog
from tfdist.training.history import EpochLog, History

TENSORBOARD_DIR = "tensorboard"
_SCALAR = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
)


def tensorboard_dir(model_dir: str) -> str:
    """Where a run under `model_dir` keeps its TensorBoard files."""
    return os.path.join(model_dir, TENSORBOARD_DIR)


class Summaries(Callback):
    """Writes TensorBoard scalars and, for `profile_steps`, a profiler trace.

    Args:
      log_dir: the TensorBoard directory (`tensorboard_dir(model_dir)`); runs
        `train` and `validation` are written below it.
      profile_steps: `(first, last)` optimizer steps (1-based, inclusive) to
        trace; every compiled loop that runs one of them is traced whole.
    """

    def __init__(self, log_dir: str, *, profile_steps: tuple[int, int] | None = None):
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise ConfigError(
                f"log_dir ({log_dir!r}) must be a directory path, e.g. tensorboard_dir(model_dir)."
            )
        self.log_dir = str(log_dir)
        self.profile_steps = check_profile_steps(profile_steps)
        self._writers: dict[str, tf.summary.SummaryWriter] = {}
        self._profiling = False

    @property
    def profile_dir(self) -> str:
        """The run directory the profiler trace goes to (`plugins/profile` below it)."""
        return os.path.join(self.log_dir, "train")

    def _write(self, run: str, step: int, scalars: dict[str, float | None]) -> None:
        if run not in self._writers:
            self._writers[run] = tf.summary.create_file_writer(os.path.join(self.log_dir, run))
        with self._writers[run].as_default():
            for tag, value in scalars.items():
                if value is not None:
                    tf.summary.write(tag, tf.constant(float(value)), step=step, metadata=_SCALAR)

    # ----- the profiler -----------------------------------------------------------------
    def on_loop_begin(self, step: int, num_steps: int) -> None:
        if self.profile_steps is None or self._profiling:
            return
        first, last = self.profile_steps
        if step + 1 <= last and step + num_steps >= first:  # The loop runs steps step+1..
            tf.profiler.experimental.start(self.profile_dir)
            self._profiling = True

    def _stop_profiler(self) -> None:
        if self._profiling:
            tf.profiler.experimental.stop()
            self._profiling = False
            self.profile_steps = None  # One trace per Summaries.

    # ----- scalars ----------------------------------------------------------------------
    def on_loop_end(self, loop: LoopLog) -> None:
        self._write(
            "train",
            loop.step,
            {
                "examples_per_sec": loop.examples_per_sec,
                "seconds_per_step": loop.seconds / loop.num_steps if loop.num_steps else None,
            },
        )
        if self._profiling and loop.step >= self.profile_steps[1]:
            self._stop_profiler()

    def on_epoch_end(self, log: EpochLog) -> None:
        step = log.global_step
        self._write(
            "train",
            step,
            {
                "loss": log.train_loss,
                "accuracy": log.train_accuracy,
                "learning_rate": log.learning_rate,
                **log.metrics,
            },
        )
        if log.val_loss is not None:
            self._write("validation", step, {"loss": log.val_loss, "accuracy": log.val_accuracy})
        for writer in self._writers.values():
            writer.flush()

    def on_fit_end(self, history: History) -> None:
        self._stop_profiler()
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
