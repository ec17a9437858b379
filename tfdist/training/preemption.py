"""Stopping together: SIGTERM or Ctrl-C saves a checkpoint at an agreed step, and a stop asked
anywhere stops every worker.

Owns the SIGTERM and SIGINT handlers of a training process (installed only while `fit`
runs, only from the main thread, the previous handlers restored after) and the agreement
between synchronous workers after each segment of steps: a signal may reach one worker
only, and a callback may set `model.stop_training` on one worker only, so every worker
sums both flags of all in one small all-reduce and all stop at the same step, or a
collective would wait forever. The controller checks after each segment, saves, and
raises `Preempted`: a `SystemExit` with code 128 + the signal, so a script that does not
catch it ends with that code and no traceback (`tfdist.fit` prints its one line; the CLI
prints it and exits with the code). Ctrl-C is a preemption: the first SIGINT saves at the
next step boundary like SIGTERM; a second one ends the process at once, as Ctrl-C does by
default (no KeyboardInterrupt traceback).
"""

from __future__ import annotations

import os
import signal
import threading

import tensorflow as tf

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(SystemExit):
    """Training stopped on SIGTERM or SIGINT after saving a checkpoint.

    Attributes:
      step: the step it stopped at.
      checkpoint: the checkpoint saved there, or None without a model_dir.
      signum: the signal (SIGTERM or SIGINT); `code` is 128 + it, the shell's convention.
    """

    def __init__(self, step: int, checkpoint: str | None, signum: int = signal.SIGTERM):
        where = f"saved checkpoint {checkpoint}" if checkpoint else "no model_dir, nothing saved"
        how = "interrupted (SIGINT)" if signum == signal.SIGINT else "preempted (SIGTERM)"
        super().__init__(128 + signum)
        self.message = f"{how} at step {step}: {where}; rerun the same command to resume."
        self.step, self.checkpoint, self.signum = step, checkpoint, signum

    def __str__(self) -> str:
        return self.message


# The watchers whose handlers are installed in this process (the main thread's fit).
_WATCHING: list[PreemptionWatcher] = []


def _previous_handlers_in_child() -> None:
    """In a process forked during a fit (a PyDataset's worker pool): the handlers from
    before the watcher. Its handler would end such a process only when the process's main
    thread runs Python again, and a pool worker waiting in a lock never does if the signal
    reaches another of its threads: `Pool.terminate()`'s SIGTERM then left it running and
    the fit waiting for it forever."""
    for watcher in _WATCHING:
        for signum, previous in watcher._previous.items():
            try:
                signal.signal(signum, previous)  # type: ignore[arg-type]
            except ValueError:  # Not the child's main thread: the handler's own check stays.
                pass
    _WATCHING.clear()


os.register_at_fork(after_in_child=_previous_handlers_in_child)


class PreemptionWatcher:
    """Context manager: records SIGTERM and SIGINT; `agree` settles the stop flags of every
    worker.

    Args:
      strategy: the run's strategy.
      sync_workers: several processes step together and must agree (multi_worker).
    """

    def __init__(self, strategy: tf.distribute.Strategy, *, sync_workers: bool):
        self._strategy = strategy
        self._sync = sync_workers
        self._received: int | None = None  # The first signal, until the stop.
        self._previous: dict[int, object] = {}
        self._pid = os.getpid()
        self._agree = tf.function(self._sum_over_workers) if sync_workers else None

    @property
    def signum(self) -> int:
        """The signal the stop was asked with (SIGTERM when it came from another worker)."""
        return self._received or signal.SIGTERM

    def _sum_over_workers(self, flags):
        def all_reduce(local):
            local = tf.identity(local)  # Placed on the replica's device, as reduce needs.
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, local)

        summed = self._strategy.run(all_reduce, args=(flags,))
        return self._strategy.experimental_local_results(summed)[0]

    def _handle(self, signum, frame):
        if os.getpid() != self._pid or (signum == signal.SIGINT and self._received):
            # A process forked during the fit (a PyDataset's worker pool) inherited this
            # handler, or Ctrl-C came twice: the signal ends it as by default, at once.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self._received = self._received or signum

    def __enter__(self) -> PreemptionWatcher:
        if threading.current_thread() is threading.main_thread():
            self._pid = os.getpid()
            self._previous = {signum: signal.signal(signum, self._handle) for signum in _SIGNALS}
            _WATCHING.append(self)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous = {}
        if self in _WATCHING:
            _WATCHING.remove(self)

    def agree(self, stop: bool = False) -> tuple[bool, bool]:
        """`(preempted, stop)`: whether this or any other worker got a signal, or asked to stop.

        Under multi_worker one all-reduce of both flags: every worker must call it.
        """
        if not self._sync:
            return bool(self._received), stop
        flags = tf.constant([float(bool(self._received)), float(stop)])
        preempted, stopped = (float(v) > 0 for v in self._agree(flags).numpy())
        return preempted, stopped
