"""Runners: the inner loops over the step, one per way of training, as Orbit splits them.

Owns the compiled calls that run the steps of one Keras call (`steps_per_execution`
steps, `tfdist.data.epochs.Call`) and what each returns: the logs Keras' fit gives at
that call's end, computed inside the call, so reading them is never a separate
collective. `SyncRunner` runs the step with `strategy.run` (`one_device`, `mirrored`,
`multi_worker`), `CoordinatorRunner` schedules it on parameter-server workers with
`ClusterCoordinator.schedule` and adds up the metric changes they return, and local
SGD's runner (`tfdist.training.local_sgd`) averages the replicas every `sync_every`
steps. Each has the same interface, which the controller (`tfdist.training.controller`)
drives:

- `segments(calls, epoch_start, every)`: an epoch's calls grouped into segments after
  which the controller may checkpoint or stop;
- `train(iterator, calls, hooks) -> (logs, steps run)`: one segment, `hooks.begin(call)`
  and `hooks.end(call, logs)` around each call; with `dynamic`, a call stops where the
  data does (a source of unknown length);
- `evaluate(dataset, hooks, calls) -> logs`, and the state of the epoch in progress for
  checkpoints.
"""

from __future__ import annotations

from typing import Any, Protocol

import keras
import tensorflow as tf

from tfdist.config import LoopConfig
from tfdist.data.epochs import Call
from tfdist.distribute.communication import GradientReducer
from tfdist.distribute.coordinator import fetch_result
from tfdist.distribute.strategies import Distribution
from tfdist.training.metric_state import Logs, MetricState
from tfdist.training.schedule import WorkerSteps, pieces, segments_ending
from tfdist.training.step import Step


class Hooks(Protocol):
    """What a runner tells the controller around each Keras call."""

    def begin(self, call: Call) -> None: ...

    def end(self, call: Call, logs: Logs) -> None: ...


class Runner(Protocol):
    """What the controller drives: every runner below has these."""

    step: Step
    metric_state: MetricState

    def segments(self, calls: list[Call], epoch_start: int, every: int | None) -> list: ...

    def start(self, step: int) -> None: ...

    def epoch_begin(self) -> None: ...

    def train(
        self, iterator: Any, calls: list[Call], hooks: Hooks, *, dynamic: bool = False
    ) -> tuple[Logs, int]: ...

    def after_segment(self, step: int, *, settle: bool, snapshot: bool = False) -> None:
        """After a segment ending at `step`. `settle`: the run needs one state here (a
        checkpoint step, an epoch's end, a stop); `snapshot`: it stops to resume later,
        and the checkpoint must hold each replica's state as it is."""

    def current_logs(self) -> Logs: ...

    def epoch_state(self) -> tf.Tensor: ...

    def restore_epoch_state(self, flat: tf.Tensor) -> None: ...

    def evaluate(
        self,
        dataset: Any,
        hooks: Hooks,
        calls: list[Call] | None,
        *,
        whole: bool = False,
        steps_per_call: int | None = None,
    ) -> Logs: ...

    @property
    def checkpointed(self) -> dict: ...

    @property
    def allreduce_bytes_per_step(self) -> int: ...

    @property
    def steps_by_worker(self) -> list[int] | None: ...

    @property
    def ps_updates(self) -> int | None: ...


def _mean(strategy: tf.distribute.Strategy, outputs: Any) -> Any:
    """A step's per-replica outputs as Keras' fit reduces them: the mean over replicas."""

    def reduce(value: Any) -> Any:
        if not isinstance(value, tf.distribute.DistributedValues) and (
            not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        ):
            return value
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)

    return tf.nest.map_structure(reduce, outputs)


class SyncRunner:
    """Steps with `strategy.run` on every replica; gradients all-reduced each update.

    Args:
      distribution: a synchronous strategy's `Distribution`.
      step: the model's `Step`.
      loop: the loop's settings.
    """

    def __init__(self, distribution: Distribution, step: Step, loop: LoopConfig):
        self.distribution = distribution
        self.strategy = distribution.strategy
        self.step = step
        self.loop = loop
        self.metric_state = step.metric_state
        self._train_call = tf.function(self._train_loop)
        self._eval_call = tf.function(self._eval_loop)
        self._whole_call = tf.function(self._whole_loop)
        self._read_call = tf.function(self._summed)

    # ----- inside the compiled calls ---------------------------------------------------
    def _summed(self) -> tf.Tensor:
        if not self.metric_state.size:
            return tf.zeros([0], tf.float64)
        return self.metric_state.summed(self.strategy)

    def _logs(self) -> Logs:
        return self.metric_state.results(self._summed())

    def _update(self, iterator: Any, first: Any = None) -> Any:
        """One optimizer update over `grad_accum_steps` micro-batches; a train_step's logs."""
        gradients = outputs = None
        for micro in range(self.step.grad_accum_steps):
            last = micro == self.step.grad_accum_steps - 1
            batch = first if micro == 0 and first is not None else next(iterator)
            gradients, outputs = self.strategy.run(
                self.step.train, args=(batch,), kwargs={"accumulated": gradients, "apply": last}
            )
        return _mean(self.strategy, outputs) if self.step.own_train_step else None

    def _train_loop(self, iterator: Any, num_steps: tf.Tensor, dynamic: bool) -> tuple:
        """`num_steps` updates (fewer when `dynamic` and the data ends); `(logs, ran)`."""
        if dynamic:
            ran = tf.constant(0)
            for _ in tf.range(num_steps):
                optional = iterator.get_next_as_optional()
                if not optional.has_value():
                    break
                self._update(iterator, first=optional.get_value())
                ran += 1
            return self._logs(), ran
        if self.step.own_train_step:  # The model's own train_step: its logs, as Keras's.
            outputs = self._update(iterator)
            for _ in tf.range(num_steps - 1):
                outputs = self._update(iterator)
            return outputs, num_steps
        for _ in tf.range(num_steps):
            self._update(iterator)
        return self._logs(), num_steps

    def _eval_loop(self, iterator: Any, num_steps: tf.Tensor, dynamic: bool) -> tuple:
        """`num_steps` evaluation batches (fewer when `dynamic` and the data ends)."""
        run = self.strategy.run
        if dynamic:
            ran = tf.constant(0)
            for _ in tf.range(num_steps):
                optional = iterator.get_next_as_optional()
                if not optional.has_value():
                    break
                run(self.step.test, args=(optional.get_value(),))
                ran += 1
            return self._logs(), ran
        if self.step.own_test_step:
            outputs = _mean(self.strategy, run(self.step.test, args=(next(iterator),)))
            for _ in tf.range(num_steps - 1):
                outputs = _mean(self.strategy, run(self.step.test, args=(next(iterator),)))
            return outputs, num_steps
        for _ in tf.range(num_steps):
            run(self.step.test, args=(next(iterator),))
        return self._logs(), num_steps

    def _whole_loop(self, dataset: Any) -> Logs:
        for batch in dataset:
            self.strategy.run(self.step.test, args=(batch,))
        return self._logs()

    # ----- called by the controller ----------------------------------------------------
    def segments(self, calls: list[Call], epoch_start: int, every: int | None) -> list:
        """One call per segment: a preemption or a stop is checked after every call."""
        return [[call] for call in calls]

    def start(self, step: int) -> None:
        """Called when a fit starts at optimizer step `step` (after any restore)."""

    def epoch_begin(self) -> None:
        self.step.model.reset_metrics()

    def train(
        self, iterator: Any, calls: list[Call], hooks: Hooks, *, dynamic: bool = False
    ) -> tuple[Logs, int]:
        logs: Logs = {}
        ran = 0
        for call in calls:
            hooks.begin(call)
            logs, count = self._train_call(iterator, tf.constant(call.steps), dynamic)
            count = int(count)
            ran += count
            if count == 0:
                return logs, ran  # The data ended before this call: Keras calls no end hook.
            hooks.end(call, logs)
            if count < call.steps:
                return logs, ran
        return logs, ran

    def after_segment(self, step: int, *, settle: bool, snapshot: bool = False) -> None:
        """Called after a segment that ended at optimizer step `step`: the replicas are
        identical after every step here, so neither `settle` nor `snapshot` has anything
        to do."""

    def current_logs(self) -> Logs:
        """The logs of the metrics as they stand (every worker must call it)."""
        return self.metric_state.results(self._read_call())

    def epoch_state(self) -> tf.Tensor:
        """The epoch in progress, for a checkpoint (every worker must call it)."""
        return self._read_call()

    def restore_epoch_state(self, flat: tf.Tensor) -> None:
        self.metric_state.assign(flat)

    def evaluate(
        self,
        dataset: Any,
        hooks: Hooks,
        calls: list[Call] | None,
        *,
        whole: bool = False,
        steps_per_call: int | None = None,
    ) -> Logs:
        """Evaluates `dataset` in `calls` (None: until it ends, in calls of `steps_per_call`
        batches, by default the loop's `steps_per_loop`).

        `whole`: each worker reads its own part of `dataset` once, in one call without
        batch hooks (its batches may differ in number from the other workers').
        """
        self.step.model.reset_metrics()
        if whole:
            return self._whole_call(dataset)
        iterator = iter(dataset)
        return _evaluate_calls(
            lambda size, dynamic: self._eval_call(iterator, tf.constant(size), dynamic),
            hooks,
            calls,
            steps_per_call or self.loop.steps_per_loop,
            self.current_logs,
        )

    @property
    def checkpointed(self) -> dict:
        """What a checkpoint must hold beyond the model, optimizer and the trainer's state."""
        return {}

    @property
    def allreduce_bytes_per_step(self) -> int:
        reducer = self.step.reducer
        return reducer.bytes_per_step if isinstance(reducer, GradientReducer) else 0

    @property
    def steps_by_worker(self) -> list[int] | None:
        return None

    @property
    def ps_updates(self) -> int | None:
        return None


def _evaluate_calls(run_call, hooks: Hooks, calls: list[Call] | None, size: int, read) -> Logs:
    """Runs an evaluation's calls with Keras' test hooks; the last logs."""
    logs: Logs | None = None
    if calls is not None:
        for call in calls:
            hooks.begin(call)
            logs, _ = run_call(call.steps, False)
            hooks.end(call, logs)
        return logs if logs is not None else read()
    first = 0
    while True:
        call = Call(first=first, steps=size, last=first + size - 1)
        hooks.begin(call)
        step_logs, count = run_call(size, True)
        count = int(count)
        if count:
            logs = step_logs
            hooks.end(call, logs)
        if count < size:
            return logs if logs is not None else read()
        first += size


class CoordinatorRunner:
    """Schedules the step on parameter-server workers; the coordinator adds up the results.

    Each scheduled piece returns the index of the worker that ran it and the change of the
    metric state over its steps (`MetricState.stateless`); the coordinator adds the
    changes in order to its own copy of the epoch's state, from which the logs come, and
    counts each worker's steps (`WorkerSteps`). A Keras call may run as several pieces: a
    segment's last pieces shrink, so a slow worker does not hold the others back.

    Args:
      distribution: a `parameter_server` `Distribution`.
      step: the model's `Step`.
      loop: the loop's settings.
    """

    def __init__(self, distribution: Distribution, step: Step, loop: LoopConfig):
        self.distribution = distribution
        self.strategy = distribution.strategy
        self.coordinator: Any = distribution.coordinator
        self.step = step
        self.loop = loop
        self.metric_state = step.metric_state
        self._all_metrics = MetricState(step.model.metrics)
        with self.strategy.scope():
            self.worker_steps = WorkerSteps(distribution.num_workers)
        self._state = tf.zeros([self.metric_state.size], tf.float64)
        self.piece_multiple = 1  # Scheduled pieces are multiples of this many steps.
        self._train_call = tf.function(self._worker_loop)
        self._eval_call = tf.function(self._eval_loop)
        self._whole_call = tf.function(self._whole_loop)

    def _update(self, iterator: Any, state: list, copy: tuple | None = None) -> list:
        """One optimizer step of micro-batches; `copy`: the worker's copy it reads and
        updates instead of the ps weights (`Step.train`)."""
        gradients = None
        for micro in range(self.step.grad_accum_steps):
            last = micro == self.step.grad_accum_steps - 1
            gradients, state = self.strategy.run(
                lambda batch, accumulated, apply, state: self.step.train(
                    batch, accumulated, apply, state, copy=copy
                ),
                args=(next(iterator), gradients, last, state),
            )
        return state

    def _worker_loop(self, iterator: Any, num_steps: tf.Tensor) -> dict:
        """`num_steps` updates on a worker; returns its index and the metric change."""
        worker = tf.distribute.coordinator.experimental_get_current_worker_index()
        state = self.metric_state.zeros()
        for _ in tf.range(num_steps):
            state = self._update(iterator, state)
        return {"worker": worker, "state": self.metric_state.pack(state)}

    def _eval_loop(self, iterator: Any, num_steps: tf.Tensor, dynamic: bool) -> tuple:
        """On the coordinator. A known number of batches is read without a `tf.cond`, in
        which a lookup table the strategy made per worker (TextVectorization's) is not
        reachable from the coordinator."""
        if not dynamic:
            for _ in tf.range(num_steps):
                self.step.test(next(iterator))
            return self._all_metrics.results(self._all_metrics.local()), num_steps
        ran = tf.constant(0)
        for _ in tf.range(num_steps):
            optional = iterator.get_next_as_optional()
            if not optional.has_value():
                break
            self.step.test(optional.get_value())
            ran += 1
        return self._all_metrics.results(self._all_metrics.local()), ran

    def _whole_loop(self, dataset: Any) -> Logs:
        for batch in dataset:
            self.step.test(batch)
        return self._all_metrics.results(self._all_metrics.local())

    def segments(self, calls: list[Call], epoch_start: int, every: int | None) -> list:
        """Calls up to each checkpoint step (the controller cut calls there)."""
        return segments_ending(calls, epoch_start, lambda step: bool(every) and step % every == 0)

    def start(self, step: int) -> None:
        self.worker_steps.start()

    def epoch_begin(self) -> None:
        self._state = tf.zeros([self.metric_state.size], tf.float64)

    def train(
        self, iterator: Any, calls: list[Call], hooks: Hooks, *, dynamic: bool = False
    ) -> tuple[Logs, int]:
        sizes = pieces(
            calls,
            self.loop.steps_per_loop,
            free_workers=self.distribution.num_workers,
            multiple=self.piece_multiple,
        )
        scheduled = []
        for call, call_pieces in zip(calls, sizes, strict=True):
            hooks.begin(call)
            scheduled.append(
                [
                    (
                        size,
                        self.coordinator.schedule(
                            self._train_call, args=(iterator, tf.constant(size))
                        ),
                    )
                    for size in call_pieces
                ]
            )
        logs: Logs = {}
        for call, results in zip(calls, scheduled, strict=True):  # In order, as results come.
            for size, result in results:
                fetched = fetch_result(self.coordinator, result)
                self.worker_steps.add(int(fetched["worker"]), size)
                self._state = self._state + tf.convert_to_tensor(fetched["state"])
            logs = self.metric_state.results(self._state)
            hooks.end(call, logs)
        self.coordinator.join()
        return logs, sum(call.steps for call in calls)

    def _schedule(self, iterator: Any, size: int) -> Any:
        return self.coordinator.schedule(self._train_call, args=(iterator, tf.constant(size)))

    def after_segment(self, step: int, *, settle: bool, snapshot: bool = False) -> None:
        self.worker_steps.commit()

    def current_logs(self) -> Logs:
        return self.metric_state.results(self._state)

    def epoch_state(self) -> tf.Tensor:
        return self._state

    def restore_epoch_state(self, flat: tf.Tensor) -> None:
        self._state = tf.convert_to_tensor(flat, tf.float64)

    def evaluate(
        self,
        dataset: Any,
        hooks: Hooks,
        calls: list[Call] | None,
        *,
        whole: bool = False,
        steps_per_call: int | None = None,
    ) -> Logs:
        """Evaluates on the coordinator itself, reading the variables from the ps; `whole`:
        the whole dataset in one call, without batch hooks."""
        self.step.model.reset_metrics()
        if whole:
            result: Logs = self._whole_call(dataset)
            return result
        iterator = iter(dataset)
        return _evaluate_calls(
            lambda size, dynamic: self._eval_call(iterator, tf.constant(size), dynamic),
            hooks,
            calls,
            steps_per_call or self.loop.steps_per_loop,
            lambda: self._all_metrics.results(self._all_metrics.local()),
        )

    @property
    def checkpointed(self) -> dict:
        return {"worker_steps": self.worker_steps.variable}

    @property
    def allreduce_bytes_per_step(self) -> int:
        return 0

    @property
    def steps_by_worker(self) -> list[int] | None:
        return self.worker_steps.counts

    @property
    def ps_updates(self) -> int | None:
        """None: each step updates the ps (`ps_local_steps.LocalStepsRunner` counts)."""
        return None


def summed_metrics(model: keras.Model, *, is_async: bool) -> MetricState:
    """The metrics a runner logs: all of them, or under parameter_server those that add up."""
    metrics = model.metrics
    if is_async:
        metrics = [m for m in metrics if MetricState([m]).summable]
    return MetricState(metrics)
