"""How an epoch's Keras calls are cut at checkpoints, grouped, and scheduled.

Owns cutting the calls of an epoch (`tfdist.data.epochs.calls`: Keras' calls of
`steps_per_execution` steps) where a checkpoint step falls inside one, grouping calls
into segments (a runner says where its segments end), the pieces a parameter-server
segment is scheduled in (its last pieces shrink, so a slow worker does not hold the
others back), and the count of the steps each parameter-server worker ran
(`WorkerSteps`). Running the calls is `tfdist.training.runners`'.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from tfdist.data.epochs import Call


def cut_at(calls: list[Call], epoch_start: int, every: int | None) -> list[Call]:
    """`calls` split where a checkpoint step (a multiple of `every`) falls inside one.

    A call keeps Keras' hook index for its end (`Call.last`); a piece cut off before a
    checkpoint ends at its own last step.
    """
    if not every:
        return list(calls)
    out = []
    for call in calls:
        first, left = call.first, call.steps
        while left:
            to_checkpoint = every - (epoch_start + first) % every
            size = min(left, to_checkpoint)
            last = call.last if size == left else first + size - 1
            out.append(Call(first=first, steps=size, last=last))
            first, left = first + size, left - size
    return out


def segments_ending(
    calls: list[Call], epoch_start: int, ends_at: Callable[[int], bool]
) -> list[list[Call]]:
    """`calls` grouped into segments, one ending after each call whose last step (global)
    satisfies `ends_at`, and the last segment at the end."""
    segments: list[list[Call]] = [[]]
    for call in calls:
        segments[-1].append(call)
        if ends_at(epoch_start + call.first + call.steps):
            segments.append([])
    return [segment for segment in segments if segment]


def pieces(
    calls: list[Call], steps_per_loop: int, *, free_workers: int, multiple: int = 1
) -> list[list[int]]:
    """How each call of a parameter-server segment is scheduled: step counts per piece.

    Each piece takes, of the segment's steps still to schedule, the share
    `shrinking_calls` would (full pieces first, shorter ones toward the segment's end),
    rounded up to a `multiple` of steps (local steps' rounds), never past its call's end.
    """
    left_in_segment = sum(call.steps for call in calls)
    out: list[list[int]] = []
    for call in calls:
        left, mine = call.steps, []
        while left:
            share = _share(left_in_segment, steps_per_loop, free_workers)
            size = min(left, -(-share // multiple) * multiple)
            mine.append(size)
            left -= size
            left_in_segment -= size
        out.append(mine)
    return out


def _share(left: int, steps_per_loop: int, workers: int) -> int:
    """A quarter per worker of the steps left (guided self-scheduling), within
    `[steps_per_loop // 8, steps_per_loop]`."""
    return min(left, steps_per_loop, max(max(1, steps_per_loop // 8), -(-left // (2 * workers))))


def shrinking_calls(steps: int, steps_per_loop: int, workers: int) -> list[int]:
    """Calls of `steps` steps for `workers` workers that each take the next call when free.

    A segment waits for its last call, so a slow worker that takes a long last call
    holds the others back. Each call is a share of the steps still to schedule
    (a quarter per worker, guided self-scheduling), at most `steps_per_loop` and at
    least an eighth of it: full calls first, then shorter ones toward the end.
    """
    calls, left = [], steps
    while left:
        calls.append(_share(left, steps_per_loop, workers))
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
