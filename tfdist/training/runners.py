"""Runners: the inner loops over the step, one per way of training, as Orbit splits them.

Owns the compiled calls that run `steps_per_loop` steps (built once per runner) and what
each call returns: the logs Keras' fit would give at that batch's end, computed inside
the call, so reading them is never a separate collective. `SyncRunner` runs the step
with `strategy.run` (`one_device`, `mirrored`, `multi_worker`), `CoordinatorRunner`
schedules it on parameter-server workers with `ClusterCoordinator.schedule` and adds up
the metric changes they return, and local SGD's runner (`tfdist.training.local_sgd`)
averages the replicas every `sync_every` steps. Each has the same interface, which the
controller (`tfdist.training.controller`) drives:

- `segments(first_step, steps, checkpoint_every)`: the loop calls of an epoch, grouped
  into segments after which the controller may checkpoint or stop;
- `train(iterator, calls, hooks) -> logs`: one segment, `hooks.begin(n)`/`hooks.end(n,
  logs)` around each call;
- `evaluate(dataset) -> logs`, and the state of the epoch in progress for checkpoints.
"""

from __future__ import annotations

from typing import Any, Protocol

import keras
import tensorflow as tf

from tfdist.config import LoopConfig
from tfdist.distribute.communication import GradientReducer
from tfdist.distribute.coordinator import fetch_result
from tfdist.distribute.strategies import Distribution
from tfdist.training.metric_state import Logs, MetricState
from tfdist.training.schedule import WorkerSteps, loop_segments
from tfdist.training.step import Step


class BatchHooks(Protocol):
    """What a runner tells the controller around each compiled call."""

    def begin(self, num_steps: int) -> None: ...

    def end(self, num_steps: int, logs: Logs) -> None: ...


class Runner(Protocol):
    """What the controller drives: every runner below has these."""

    step: Step
    metric_state: MetricState

    def segments(self, first_step: int, steps: int, checkpoint_every: int | None) -> list: ...

    def start(self, step: int) -> None: ...

    def epoch_begin(self) -> None: ...

    def train(self, iterator: Any, calls: list[int], hooks: BatchHooks) -> Logs: ...

    def after_segment(self, step: int) -> None: ...

    def current_logs(self) -> Logs: ...

    def epoch_state(self) -> tf.Tensor: ...

    def restore_epoch_state(self, flat: tf.Tensor) -> None: ...

    def evaluate(self, dataset: Any) -> Logs: ...

    @property
    def checkpointed(self) -> dict: ...

    @property
    def allreduce_bytes_per_step(self) -> int: ...

    @property
    def steps_by_worker(self) -> list[int] | None: ...


def _mean(strategy: tf.distribute.Strategy, outputs):
    """A step's per-replica outputs as Keras' fit reduces them: the mean over replicas."""

    def reduce(value):
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
        self._read_call = tf.function(self._summed)

    # ----- inside the compiled calls ---------------------------------------------------
    def _summed(self) -> tf.Tensor:
        if not self.metric_state.size:
            return tf.zeros([0], tf.float64)
        return self.metric_state.summed(self.strategy)

    def _update(self, iterator):
        """One optimizer update over `grad_accum_steps` micro-batches; a train_step's logs."""
        gradients = outputs = None
        for micro in range(self.step.grad_accum_steps):
            last = micro == self.step.grad_accum_steps - 1
            gradients, outputs = self.strategy.run(
                self.step.train,
                args=(next(iterator),),
                kwargs={"accumulated": gradients, "apply": last},
            )
        return _mean(self.strategy, outputs) if self.step.own_train_step else None

    def _train_loop(self, iterator, num_steps):
        """`num_steps` updates; returns the logs Keras gives at the last one's end."""
        if self.step.own_train_step:  # The model's own train_step: its logs, as Keras's.
            outputs = self._update(iterator)
            for _ in tf.range(num_steps - 1):
                outputs = self._update(iterator)
            return outputs
        for _ in tf.range(num_steps):
            self._update(iterator)
        return self._logs()

    def _logs(self) -> Logs:
        return self.metric_state.results(self._summed())

    def _eval_loop(self, dataset) -> Logs:
        for batch in dataset:
            self.strategy.run(self.step.test, args=(batch,))
        return self.metric_state.results(self._summed())

    # ----- called by the controller ----------------------------------------------------
    def segments(self, first_step: int, steps: int, checkpoint_every: int | None) -> list:
        """One call per segment: a preemption or a stop is checked after every call."""
        return loop_segments(
            first_step,
            steps,
            every=checkpoint_every,
            steps_per_loop=self.loop.steps_per_loop,
            one_call_each=True,
        )

    def start(self, step: int) -> None:
        """Called when a fit starts at optimizer step `step` (after any restore)."""

    def epoch_begin(self) -> None:
        self.step.model.reset_metrics()

    def train(self, iterator, calls: list[int], hooks: BatchHooks) -> Logs:
        logs: Logs = {}
        for size in calls:
            hooks.begin(size)
            logs = self._train_call(iterator, tf.constant(size))
            hooks.end(size, logs)
        return logs

    def after_segment(self, step: int) -> None:
        """Called after a segment that ended at optimizer step `step`."""

    def current_logs(self) -> Logs:
        """The logs of the metrics as they stand (every worker must call it)."""
        return self.metric_state.results(self._read_call())

    def epoch_state(self) -> tf.Tensor:
        """The epoch in progress, for a checkpoint (every worker must call it)."""
        return self._read_call()

    def restore_epoch_state(self, flat: tf.Tensor) -> None:
        self.metric_state.assign(flat)

    def evaluate(self, dataset) -> Logs:
        self.step.model.reset_metrics()
        return self._eval_call(dataset)

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


class CoordinatorRunner:
    """Schedules the step on parameter-server workers; the coordinator adds up the results.

    Each scheduled call returns the index of the worker that ran it and the change of the
    metric state over its steps (`MetricState.stateless`); the coordinator adds the
    changes in call order to its own copy of the epoch's state, from which the logs come,
    and counts each worker's steps (`WorkerSteps`).

    Args:
      distribution: a `parameter_server` `Distribution`.
      step: the model's `Step`.
      loop: the loop's settings.
    """

    def __init__(self, distribution: Distribution, step: Step, loop: LoopConfig):
        self.distribution = distribution
        self.strategy = distribution.strategy
        self.coordinator = distribution.coordinator
        self.step = step
        self.loop = loop
        self.metric_state = step.metric_state
        with self.strategy.scope():
            self.worker_steps = WorkerSteps(distribution.num_workers)
        self._state = tf.zeros([self.metric_state.size], tf.float64)
        self._train_call = tf.function(self._worker_loop)
        self._eval_call = tf.function(self._eval_loop)

    def _update(self, iterator, state):
        gradients = None
        for micro in range(self.step.grad_accum_steps):
            last = micro == self.step.grad_accum_steps - 1
            gradients, state = self.strategy.run(
                self.step.train,
                args=(next(iterator),),
                kwargs={"accumulated": gradients, "apply": last, "state": state},
            )
        return state

    def _worker_loop(self, iterator, num_steps):
        """`num_steps` updates on a worker; returns its index and the metric change."""
        worker = tf.distribute.coordinator.experimental_get_current_worker_index()
        state = self.metric_state.zeros()
        for _ in tf.range(num_steps):
            state = self._update(iterator, state)
        return {"worker": worker, "state": self.metric_state.pack(state)}

    def _eval_loop(self, dataset) -> Logs:
        for batch in dataset:
            self.step.test(batch)
        return self.metric_state.results(self.metric_state.local())

    def segments(self, first_step: int, steps: int, checkpoint_every: int | None) -> list:
        """Calls up to each checkpoint step; a segment's last calls shrink (slow workers)."""
        return loop_segments(
            first_step,
            steps,
            every=checkpoint_every,
            steps_per_loop=self.loop.steps_per_loop,
            one_call_each=False,
            free_workers=self.distribution.num_workers,
        )

    def start(self, step: int) -> None:
        self.worker_steps.start()

    def epoch_begin(self) -> None:
        self._state = tf.zeros([self.metric_state.size], tf.float64)

    def train(self, iterator, calls: list[int], hooks: BatchHooks) -> Logs:
        results = []
        for size in calls:
            hooks.begin(size)
            results.append(
                self.coordinator.schedule(self._train_call, args=(iterator, tf.constant(size)))
            )
        logs: Logs = {}
        for size, result in zip(calls, results, strict=True):  # In order, as results come in.
            fetched = fetch_result(self.coordinator, result)
            self.worker_steps.add(int(fetched["worker"]), size)
            self._state = self._state + tf.convert_to_tensor(fetched["state"])
            logs = self.metric_state.results(self._state)
            hooks.end(size, logs)
        self.coordinator.join()
        return logs

    def after_segment(self, step: int) -> None:
        self.worker_steps.commit()

    def current_logs(self) -> Logs:
        return self.metric_state.results(self._state)

    def epoch_state(self) -> tf.Tensor:
        return self._state

    def restore_epoch_state(self, flat: tf.Tensor) -> None:
        self._state = tf.convert_to_tensor(flat, tf.float64)

    def evaluate(self, dataset) -> Logs:
        """Evaluates on the coordinator itself, reading the variables from the ps."""
        self.step.model.reset_metrics()
        return self._eval_call(dataset)

    @property
    def checkpointed(self) -> dict:
        return {"worker_steps": self.worker_steps.variable}

    @property
    def allreduce_bytes_per_step(self) -> int:
        return 0

    @property
    def steps_by_worker(self) -> list[int] | None:
        return self.worker_steps.counts


def summed_metrics(model: keras.Model, *, is_async: bool) -> MetricState:
    """The metrics a runner logs: all of them, or under parameter_server those that add up."""
    metrics = model.metrics
    if is_async:
        metrics = [m for m in metrics if MetricState([m]).summable]
    return MetricState(metrics)
