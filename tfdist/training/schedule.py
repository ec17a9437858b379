"""How an epoch's steps are cut into compiled loop calls, and who ran them.

Owns the plan of loop calls (`steps_per_loop` steps each) grouped into segments that
end at checkpoint steps, the shrinking last calls of a parameter-server segment, and
the count of the steps each parameter-server worker ran (`WorkerSteps`). Running the
calls is `tfdist.training.runners`'; the plan of local SGD's calls is
`tfdist.training.local_sgd`'s.
"""

from __future__ import annotations

import tensorflow as tf


def loop_segments(
    first_step: int,
    steps: int,
    *,
    every: int | None,
    steps_per_loop: int,
    one_call_each: bool,
    free_workers: int = 0,
) -> list[list[int]]:
    """Loop-call sizes for `steps` steps from `first_step`, grouped into segments.

    A segment ends at each multiple of `every` (a checkpoint) and at the end; its
    loop calls have at most `steps_per_loop` steps. Sync strategies check for
    preemption after every call (`one_call_each`), so each call is its own segment there.
    With `free_workers` (parameter_server: each free worker takes the next call) a
    segment's last calls shrink (`shrinking_calls`).
    """
    segments, step, last = [], first_step, first_step + steps
    while step < last:
        stop = last if not every else min(last, (step // every + 1) * every)
        if free_workers:
            calls = shrinking_calls(stop - step, steps_per_loop, free_workers)
        else:
            full, rest = divmod(stop - step, steps_per_loop)
            calls = [steps_per_loop] * full + ([rest] if rest else [])
        segments.extend([[c] for c in calls] if one_call_each else [calls])
        step = stop
    return segments


def shrinking_calls(steps: int, steps_per_loop: int, workers: int) -> list[int]:
    """Calls of `steps` steps for `workers` workers that each take the next call when free.

    A segment waits for its last call, so a slow worker that takes a long last call
    holds the others back. Each call is a share of the steps still to schedule
    (a quarter per worker, guided self-scheduling), at most `steps_per_loop` and at
    least an eighth of it: full calls first, then shorter ones toward the end.
    """
    calls, left = [], steps
    smallest = max(1, steps_per_loop // 8)
    while left:
        calls.append(min(left, steps_per_loop, max(smallest, -(-left // (2 * workers)))))
        left -= calls[-1]
    return calls


class WorkerSteps:
    """The optimizer steps each parameter-server worker ran, in a checkpointed variable.

    Under `parameter_server` whichever worker is free runs the next loop call, so a
    faster worker runs more of them. Each call's result names its worker
    (`StepFunctions.async_loop`); the coordinator adds the call's steps to that
    worker's count as it fetches the result (`add`), the only writer, and writes the
    counts to the variable once per segment (`commit`), before any checkpoint, so
    their sum stays the trainer's step across resumes. A call the coordinator reran
    after losing its worker counts once, for the worker whose result it fetched.

    Args:
      num_workers: the workers of this run; a checkpoint of another number restores
        too (its counts first, this run's workers after them).
    """

    def __init__(self, num_workers: int):
        self.variable = tf.Variable(
            tf.zeros([num_workers], tf.int64),
            trainable=False,
            shape=tf.TensorShape([None]),
            name="worker_steps",
        )
        self._num_workers = num_workers
        self._counts: list[int] = [0] * num_workers

    def start(self) -> None:
        """Reads the counts (restored or not), with room for every worker of this run."""
        counts = [int(n) for n in self.variable.numpy()]
        self._counts = counts + [0] * (self._num_workers - len(counts))

    def add(self, worker: int, steps: int) -> None:
        self._counts[worker] += steps

    def commit(self) -> None:
        self.variable.assign(tf.constant(self._counts, tf.int64))

    @property
    def counts(self) -> list[int]:
        return list(self._counts)
