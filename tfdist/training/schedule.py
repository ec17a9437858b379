"""How an epoch's steps are cut into compiled loop calls, and where a resumed run starts.

Owns the plan of loop calls (`steps_per_loop` steps each) grouped into segments that
end at checkpoint steps, what the epochs of one `fit` share (`EpochRun`), the inputs of
a run (`make_inputs`): a resumed run skips the batches already consumed, and the count
of the steps each parameter-server worker ran (`WorkerSteps`). Running the calls is
`tfdist.training.trainer`'s.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import tensorflow as tf

if TYPE_CHECKING:
    from tfdist.training.callbacks import CallbackList
    from tfdist.training.checkpoints import CheckpointKeeper
    from tfdist.training.preemption import PreemptionWatcher


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


@dataclasses.dataclass
class EpochRun:
    """What the epochs of one `fit` share."""

    keeper: CheckpointKeeper | None
    every: int | None
    hooks: CallbackList
    watcher: PreemptionWatcher
    diverged: bool = False  # The loss became NaN/inf and a callback stopped the run.


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


def skipping(train_fn, micro_steps: int):
    """`train_fn` with the batches of `micro_steps` steps already consumed skipped."""
    if not micro_steps:
        return train_fn

    def resumed(context):
        per_pipeline = context.num_replicas_in_sync // context.num_input_pipelines
        return train_fn(context).skip(micro_steps * per_pipeline)

    return resumed


def make_inputs(distribution, train_fn, validation_fn, *, skip_micro_steps: int = 0):
    """`(training iterator or None, validation dataset or None)` for `distribution`.

    Training resumes after `skip_micro_steps` consumed micro-batches (sync strategies).
    Under `parameter_server` every worker builds its own training dataset and the
    coordinator reads the whole validation split; a process that feeds one CPU replica
    reads its datasets directly (a distributed iterator only adds a copy per batch there).
    """
    from tfdist.data.pipeline import per_worker_dataset_fn
    from tfdist.training.compiled import whole_split_context

    strategy = distribution.strategy
    if distribution.is_async:
        train = iter(
            distribution.coordinator.create_per_worker_dataset(
                per_worker_dataset_fn(train_fn, num_workers=distribution.num_workers)
            )
        )
        return train, validation_fn(whole_split_context()) if validation_fn else None
    if train_fn is not None:
        train_fn = skipping(train_fn, skip_micro_steps)
    direct = distribution.direct_input_context()
    if direct is not None:
        return (
            iter(train_fn(direct)) if train_fn else None,
            validation_fn(direct) if validation_fn else None,
        )
    train = iter(strategy.distribute_datasets_from_function(train_fn)) if train_fn else None
    validation = (
        strategy.distribute_datasets_from_function(validation_fn) if validation_fn else None
    )
    return train, validation
