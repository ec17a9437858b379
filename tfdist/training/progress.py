"""Progress: what a training task prints while it trains.

Owns the progress display. On a terminal, one line is redrawn after each
compiled loop (bar, steps, ETA, running loss, examples/s) and, at the end of
each epoch, replaced by the epoch's summary line. Anywhere else (CI logs,
files, the launcher's pipes, notebooks) only the summary line is printed, one
per epoch, so logs stay readable. Which tasks show progress is the caller's
choice (`job`: the chief; every worker with `--verbose`).
"""

from __future__ import annotations

import sys
from typing import TextIO

from tfdist.training.callbacks import Callback, LoopLog
from tfdist.training.history import EpochLog


def format_epoch(log: EpochLog, *, epochs: int | None = None) -> str:
    """One epoch in one line: loss, accuracies, custom metrics, seconds and examples/s."""
    parts = [f"epoch {log.epoch}" + (f"/{epochs}" if epochs else ""), f"loss {log.train_loss:.4f}"]
    if log.train_accuracy is not None:
        parts.append(f"accuracy {log.train_accuracy:.4f}")
    parts.extend(f"{name} {value:.4f}" for name, value in log.metrics.items())
    if log.val_loss is not None:
        parts.append(f"val_loss {log.val_loss:.4f}")
    if log.val_accuracy is not None:
        parts.append(f"val_accuracy {log.val_accuracy:.4f}")
    parts.append(f"{log.train_seconds:.2f} s, {log.examples_per_sec:,.0f} examples/s")
    return " - ".join(parts)


def format_duration(seconds: float) -> str:
    """`75` → `1:15`; `3725` → `1:02:05`."""
    minutes, secs = divmod(int(round(max(seconds, 0.0))), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def is_terminal(stream: TextIO) -> bool:
    """Whether `stream` is an interactive terminal (False for pipes, files, notebooks)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # A closed stream.
        return False


class ProgressBar(Callback):
    """A progress bar with ETA on a terminal; one line per epoch elsewhere.

    Args:
      stream: where to write; None means the `sys.stdout` of the moment (so a
        notebook's or a test's captured stdout works).
      width: characters of the bar.
    """

    def __init__(self, *, stream: TextIO | None = None, width: int = 24):
        self._stream = stream
        self.width = width
        self._epochs = self._steps_per_epoch = 0
        self._timed_steps, self._timed_seconds = 0, 0.0
        self._first_loop = True
        self._drawn = 0

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stdout

    def on_fit_begin(self, *, epochs, steps_per_epoch, initial_epoch, initial_step) -> None:
        self._epochs, self._steps_per_epoch = epochs, steps_per_epoch
        self._timed_steps, self._timed_seconds = 0, 0.0
        self._first_loop = True

    def _eta(self, loop: LoopLog) -> float | None:
        # The first loop of a fit includes tracing and compiling: leave it out once others ran.
        if self._first_loop:
            self._first_loop = False
            rate = loop.seconds / loop.num_steps
        else:
            self._timed_steps += loop.num_steps
            self._timed_seconds += loop.seconds
            rate = self._timed_seconds / self._timed_steps
        remaining = (
            (self._epochs - loop.epoch) * self._steps_per_epoch
            + loop.steps_per_epoch
            - loop.epoch_steps
        )
        return remaining * rate

    def _draw(self, line: str, *, end: str = "") -> None:
        padding = " " * max(0, self._drawn - len(line))
        self.stream.write("\r" + line + padding + end)
        self.stream.flush()
        self._drawn = 0 if end else len(line)

    def on_loop_end(self, loop: LoopLog) -> None:
        eta = self._eta(loop)
        if not is_terminal(self.stream):
            return
        done = min(1.0, loop.epoch_steps / max(loop.steps_per_epoch, 1))
        filled = int(done * self.width)
        bar = "=" * filled + (">" if filled < self.width else "") + "." * (self.width - filled - 1)
        self._draw(
            f"epoch {loop.epoch}/{self._epochs} [{bar}] "
            f"{loop.epoch_steps}/{loop.steps_per_epoch} - ETA {format_duration(eta)} - "
            f"loss {loop.loss:.4f} - {loop.examples_per_sec:,.0f} examples/s"
        )

    def on_epoch_end(self, log: EpochLog) -> None:
        line = format_epoch(log, epochs=self._epochs or None)
        if is_terminal(self.stream):
            self._draw(line, end="\n")
        else:
            print(line, file=self.stream, flush=True)
