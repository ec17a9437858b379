"""Preemption: SIGTERM makes a run save a checkpoint at an agreed step and stop cleanly.

Owns the SIGTERM handler of a training process (installed only while `fit` runs,
only from the main thread, the previous handler restored after) and the agreement
between synchronous workers: a SIGTERM may reach one worker only, so every worker
sums the flags of all (one scalar all-reduce per check) and all stop at the same
step, or a collective would wait forever. The trainer checks between loop calls,
saves, and raises `Preempted`; the CLI exits with 128 + SIGTERM.
"""

from __future__ import annotations

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
    """Context manager: records SIGTERM; `agreed()` says whether any worker got one."""

    def __init__(self, strategy: tf.distribute.Strategy, *, sync_workers: bool):
        """`sync_workers`: several processes step together and must agree (multi_worker)."""
        self._strategy = strategy
        self._sync = sync_workers
        self._received = False
        self._previous = None
        self._agree = None
        if sync_workers:

            def agree(flag):
                def all_reduce(f):
                    local = tf.identity(f)  # Placed on the replica's device, as reduce needs.
                    return tf.distribute.get_replica_context().all_reduce(
                        tf.distribute.ReduceOp.SUM, local
                    )

                summed = strategy.run(all_reduce, args=(flag,))
                return strategy.experimental_local_results(summed)[0]

            self._agree = tf.function(agree)

    def _handle(self, signum, frame):
        self._received = True

    def __enter__(self) -> PreemptionWatcher:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def agreed(self) -> bool:
        """True when this or (sync) any other worker received SIGTERM; every worker must call."""
        if not self._sync:
            return self._received
        total = self._agree(tf.constant(1.0 if self._received else 0.0))
        return float(total) > 0
