"""Stopping together: SIGTERM saves a checkpoint at an agreed step, and a stop asked anywhere
stops every worker.

Owns the SIGTERM handler of a training process (installed only while `fit` runs, only
from the main thread, the previous handler restored after) and the agreement between
synchronous workers after each segment of steps: a SIGTERM may reach one worker only,
and a callback may set `model.stop_training` on one worker only, so every worker sums
both flags of all in one small all-reduce and all stop at the same step, or a
collective would wait forever. The controller checks after each segment, saves, and
raises `Preempted`; the CLI exits with 128 + SIGTERM.
"""

from __future__ import annotations

import os
import signal
import threading

import tensorflow as tf


class Preempted(Exception):
    """Training stopped on SIGTERM after saving a checkpoint."""

    def __init__(self, step: int, checkpoint: str | None):
        where = f"saved checkpoint {checkpoint}" if checkpoint else "no model_dir, nothing saved"
        super().__init__(
            f"preempted (SIGTERM) at step {step}: {where}; rerun the same command to resume."
        )
        self.step, self.checkpoint = step, checkpoint


class PreemptionWatcher:
    """Context manager: records SIGTERM; `agree` settles the stop flags of every worker.

    Args:
      strategy: the run's strategy.
      sync_workers: several processes step together and must agree (multi_worker).
    """

    def __init__(self, strategy: tf.distribute.Strategy, *, sync_workers: bool):
        self._strategy = strategy
        self._sync = sync_workers
        self._received = False
        self._previous = None
        self._pid = os.getpid()
        self._agree = tf.function(self._sum_over_workers) if sync_workers else None

    def _sum_over_workers(self, flags):
        def all_reduce(local):
            local = tf.identity(local)  # Placed on the replica's device, as reduce needs.
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, local)

        summed = self._strategy.run(all_reduce, args=(flags,))
        return self._strategy.experimental_local_results(summed)[0]

    def _handle(self, signum, frame):
        if os.getpid() != self._pid:
            # A process forked during the fit (a PyDataset's worker pool) inherited this
            # handler: SIGTERM ends it as by default, so stopping the pool cannot hang.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        self._received = True

    def __enter__(self) -> PreemptionWatcher:
        if threading.current_thread() is threading.main_thread():
            self._pid = os.getpid()
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def agree(self, stop: bool = False) -> tuple[bool, bool]:
        """`(preempted, stop)`: whether this or any other worker got SIGTERM, or asked to stop.

        Under multi_worker one all-reduce of both flags: every worker must call it.
        """
        if not self._sync:
            return self._received, stop
        flags = tf.constant([float(self._received), float(stop)])
        preempted, stopped = (float(v) > 0 for v in self._agree(flags).numpy())
        return preempted, stopped
