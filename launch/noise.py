"""TensorFlow's start-up noise in a launched task's output, and a stream that drops it.

Every TensorFlow process prints a few C++ log lines before any of its own: absl's
"before absl::InitializeLog()" notice, oneDNN's numerics notice, the CUDA stub's
"Could not find cuda drivers" and, on a machine without a GPU driver, "failed call
to cuInit"; a parameter-server chief adds a `function_handle_cache` error each
epoch. The INFO lines are written before TensorFlow's logging reads
TF_CPP_MIN_LOG_LEVEL, so no environment variable silences them: the launcher
drops them from the output it forwards (`QuietOutput`), line by line, by source
file and message, so any other line (a real error, the training's own warnings)
still shows. The text of the tf.data options `UserWarning` that iterating a
dataset in a traced function triggers is `TF_DATA_OPTIONS_WARNING`, for a task's
entry point to filter with `warnings.filterwarnings`. Standard library only.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from launch.streams import TextSink

# (C++ source file, a fragment of its message); file "" matches a line that is not a
# C++ log record.
NOISE = (
    ("", "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"),
    ("port.cc", "oneDNN custom operations are on"),
    ("cudart_stub.cc", "Could not find cuda drivers on your machine"),
    ("cuda_platform.cc", "failed call to cuInit"),
    ("cuda_executor.cc", "failed call to cuInit"),
    ("function_handle_cache.cc", "Failed to clear function handle cache"),
)
TF_DATA_OPTIONS_WARNING = "To make it possible to preserve tf.data options"
# A C++ or absl log record: "I0000 00:00:1796111833.601848   14178 port.cc:153] message".
LOG_RECORD = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ ([\w.-]+):\d+\] (.*)$")
_TASK_PREFIX = re.compile(r"^\[[\w:-]+\] ")


def is_noise(line: str) -> bool:
    """Whether `line` (without its "[task] " prefix) is TensorFlow start-up noise."""
    line = line.rstrip("\r\n")
    record = LOG_RECORD.match(line)
    source, message = (record.group(1), record.group(2)) if record else ("", line)
    return any(source == noisy_source and fragment in message for noisy_source, fragment in NOISE)


class QuietOutput:
    """A text stream that forwards whole lines to another, less the noise lines.

    Lines may carry a task prefix ("[worker:1] ..."): the noise test looks past it.
    `run_local(output=QuietOutput(...))` writes one whole line per call; partial
    writes are buffered until their newline. Safe to write from several threads.

    Args:
        target: The stream written to, or a function returning it (e.g.
            `lambda: sys.stdout`, resolved at each write, as `run_local` does for
            its default).
        keep: Decides, for a line without its prefix, whether it is forwarded;
            default: every line that `is_noise` does not match.
    """

    def __init__(
        self,
        target: TextSink | Callable[[], TextSink],
        keep: Callable[[str], bool] | None = None,
    ) -> None:
        self._target = target
        self._keep = keep or (lambda line: not is_noise(line))
        self._pending = ""
        self._lock = threading.Lock()
        self.dropped = 0

    def _stream(self) -> TextSink:
        if callable(self._target):
            stream: TextSink = self._target()
            return stream
        return self._target

    def write(self, text: str) -> int:
        with self._lock:
            lines = (self._pending + text).split("\n")
            self._pending = lines.pop()
            for line in lines:
                if self._keep(_TASK_PREFIX.sub("", line, count=1)):
                    self._stream().write(line + "\n")
                else:
                    self.dropped += 1
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._stream().flush()
