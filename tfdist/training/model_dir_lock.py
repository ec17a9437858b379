"""One writer per model_dir: the chief of a run holds a lock on it while it trains.

Owns `MODEL_DIR/.tfdist.lock`: an exclusive `flock` the chief takes when its fit starts
and lets go when the fit ends. The operating system releases it when the process dies,
so a crashed or killed run's successor takes it over with nothing to clean up. Linux maps
`flock` on NFS to NFS locks (not tested here across hosts). The file names its holder (pid,
host, since when), so a second run writing the same model_dir at the same time gets one
line naming the first. Object-store paths (`gs://...`) cannot be locked and are not.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import socket

from tfdist.config import ConfigError

LOCK_NAME = ".tfdist.lock"


class ModelDirLock:
    """Context manager: holds `model_dir`'s lock, or raises ConfigError naming its holder."""

    def __init__(self, model_dir: str):
        self.model_dir = model_dir
        self.path = os.path.join(model_dir, LOCK_NAME)
        self._file = None

    def __enter__(self) -> ModelDirLock:
        if "://" in self.model_dir:
            return self
        os.makedirs(self.model_dir, exist_ok=True)
        lock = open(self.path, "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise ConfigError(
                f"model_dir ({self.model_dir}) is being written by another run ({holder}): "
                "two runs in one model_dir would overwrite each other's checkpoints; wait for "
                "it to end, stop it, or pass another model_dir."
            ) from None
        since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} on {socket.gethostname()} since {since}\n")
        lock.flush()
        self._file = lock
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
