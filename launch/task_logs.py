"""Per-task log files of a local launch: every line each task wrote, one file per attempt.

This module owns where a launch keeps its tasks' full output: a `LaunchLogs` directory
(given, or a fresh one under the system's temp directory) holds one folder per attempt
of the cluster, `attempt-1/`, `attempt-2/`, ..., and in it one file per task,
`worker-1.log` for task "worker:1". Each line a task writes goes to its file as it
is, unfiltered (TensorFlow's start-up noise, and the errors the other tasks print once
one has failed, which the terminal does not show). A task restarted in place appends to
its file. Writing the lines is `launch._processes.PrefixedOutput`'s job. Standard
library only.
"""

import os
import pathlib
import tempfile
import threading
from typing import Literal, TextIO

from launch.errors import LaunchError

_ATTEMPT_FOLDER = "attempt-{number}"
_TEMP_PREFIX = "launch-"


def log_file_name(task_name: str) -> str:
    """The log file of a task: "worker:1" → "worker-1.log"."""
    return task_name.replace(":", "-") + ".log"


class AttemptLogs:
    """The log files of one attempt's tasks, opened as each task writes its first line.

    Safe to write from several threads. Use as a context manager (or call `close`)
    so that the files are closed when the attempt ends.

    Args:
        directory: The attempt's folder; it must exist.
    """

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        self._files: dict[str, TextIO] = {}
        self._opened: set[str] = set()  # A file from an earlier launch is overwritten once.
        self._lock = threading.Lock()

    def path_of(self, task_name: str) -> pathlib.Path:
        """The log file of task `task_name` (e.g. "worker:1") in this attempt."""
        return self.directory / log_file_name(task_name)

    def write_line(self, task_name: str, line: str) -> None:
        """Appends `line` to the task's file; a file that cannot be written is skipped.

        A full disk or a closed file must not stop the task whose output it is: the
        line still reaches the terminal and the task's tail.
        """
        with self._lock:
            try:
                log = self._files.get(task_name) or self._open(task_name)
                log.write(line + "\n")
                log.flush()
            except (OSError, ValueError):
                pass

    def _open(self, task_name: str) -> TextIO:
        """Opens the task's file: overwriting the first time, appending after `close`."""
        mode: Literal["a", "w"] = "a" if task_name in self._opened else "w"
        log = open(self.path_of(task_name), mode, encoding="utf-8", errors="replace")
        self._opened.add(task_name)
        self._files[task_name] = log
        return log

    def close(self) -> None:
        """Closes every file; a later line opens its file again, appending to it."""
        with self._lock:
            files, self._files = self._files, {}
        for log in files.values():
            try:
                log.close()
            except OSError:
                pass

    def __enter__(self) -> "AttemptLogs":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class LaunchLogs:
    """The log directory of a launch: one `AttemptLogs` folder per attempt.

    Args:
        directory: Where the logs go; created if missing. None: a fresh directory
            under the system's temp directory (e.g. /tmp/launch-k2j4x9), which the
            launcher leaves there.

    Raises:
        LaunchError: If the directory cannot be created.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        if directory is None:
            try:
                directory = tempfile.mkdtemp(prefix=_TEMP_PREFIX)
            except OSError as error:
                raise _cannot_create(tempfile.gettempdir(), error) from error
        self.directory = pathlib.Path(directory)
        _make_folder(self.directory)

    def attempt(self, number: int) -> AttemptLogs:
        """The folder of attempt `number` (from 1), e.g. "attempt-1/".

        A task's file left there by an earlier launch is overwritten by its first line.

        Raises:
            LaunchError: If the folder cannot be created.
        """
        folder = self.directory / _ATTEMPT_FOLDER.format(number=number)
        _make_folder(folder)
        return AttemptLogs(folder)


def _make_folder(folder: pathlib.Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _cannot_create(folder, error) from error


def _cannot_create(folder: object, error: OSError) -> LaunchError:
    return LaunchError(
        f"Cannot create the log folder {folder} ({error}); pass a writable directory, "
        "e.g. --log_dir=/tmp/launch-logs."
    )
