"""Local steps on parameter-server workers: fewer updates for asynchronous training.

Owns what `sync_every` (H) changes under `parameter_server`, Downpour SGD's
`n_fetch = n_push = H` (Dean et al., 2012) and asynchronous DiLoCo: each worker keeps its
own copy of the trainable weights and its own optimizer (a clone of the model's, with its
own slots) in variables on the worker (`WorkerCopies`). A round fetches the weights from
the ps into the copy, takes H steps of tfdist's one step (`tfdist.training.step`, its
forward pass reading the copy through Keras' `StatelessScope`, the copy's optimizer
applying the gradients on the worker), then pushes one update: the copy's change over
the round divided by the number of workers, each worker's share of an average, added to
the ps weights (`outer_optimizer="none"`), or, negated, the gradient of an outer SGD or
Nesterov step run on the ps (its momentum is a ps variable, checkpointed). With one worker
that is the change itself; with more, a round of every worker moves the weights by their
average change, as `none` does for the synchronous strategies. Their sum instead did not
learn: with two workers the synthetic job's validation accuracy stayed at 0.10
(docs/performance.md). Each update is one op on the ps: Keras' `assign_add` reads the
weight and writes back the sum, so a push landing between the two would be lost. Each
round reads and writes the ps weights once, per H steps instead of every step: 814 KB
each way on the reference MLP. `ps_updates`, a ps variable, counts the pushes the ps
received.

A scheduled piece of n steps runs ceil(n / H) rounds, the last one shorter, so every step
a piece takes reaches the ps before it returns: checkpoints, stops and the step counts
(`WorkerSteps`) see whole pieces, as without local steps. Staleness: a worker's push
is computed on weights up to H steps old, and the other workers push meanwhile, so a
push lands on weights up to about H x workers steps newer than those it began from; with
more of either, lower the learning rate (or, with `outer_optimizer`, the outer rate).

What it gives up: a worker's optimizer slots are its own, start at zero, are not
checkpointed and start again at zero when the worker restarts (its copy of the weights
is fetched at every round, so nothing else is lost); a piece interrupted by a lost worker
runs again on another (its rounds pushed before the loss stay pushed). The learning rate
and step count the copy's optimizer uses are the model optimizer's, read from the ps at
each round, so schedules and ReduceLROnPlateau apply.

The worker-local variables are TensorFlow's `PerWorkerVariable` (ParameterServerStrategy's
`per_worker_variable`, experimental) with two fixes of ours (`_WorkerVariable`): each has
its own id, which Keras' optimizer keys its slots by, and one handle per traced function,
so its reads and writes are ordered and a gradient tape can follow it.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from tensorflow.python.distribute import ps_values
from tensorflow.python.eager import context
from tensorflow.python.framework import ops
from tensorflow.python.saved_model import save_context

from tfdist.config import ConfigError, LocalSGDConfig, LoopConfig
from tfdist.distribute.communication import disable_optimizer_all_reduce
from tfdist.distribute.strategies import Distribution
from tfdist.training.runners import CoordinatorRunner
from tfdist.training.step import Step


class _HandleSpec(ps_values.PerWorkerVariableSpec):
    """The spec of one variable's handle, equal to no other: tracing caches equal specs, and
    another variable's would bring its shape."""

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)


class _WorkerVariable(ps_values.PerWorkerVariable):
    """A variable with one copy on each worker, resolved to the running worker's copy when
    a scheduled function runs there.

    TensorFlow's `PerWorkerVariable` gives every such variable the same `_unique_id`
    (None), and a new handle placeholder at each read, so the reads and writes of one
    variable in a function are not ordered and a tape cannot follow it; here each has its
    own id and one placeholder per function.
    """

    def __init__(self, strategy, next_creator, **kwargs):
        super().__init__(strategy, next_creator, **kwargs)
        self._unique_id = self._coordinator_instance._unique_id

    @property
    def handle(self):
        if context.executing_eagerly() or save_context.in_save_context():
            return self._coordinator_instance.handle
        self._maybe_create_per_worker_vars()
        closure, _ = self.handle_call_time_value()
        return ops.get_default_graph().capture_call_time_value(
            closure,
            _HandleSpec(value=self._coordinator_instance.handle),
            key=("tfdist_worker_variable", id(self)),
        )


def _on_each_worker(strategy):
    def creator(next_creator, **kwargs):
        return _WorkerVariable(strategy, next_creator, **kwargs)

    return creator


class WorkerCopies:
    """Each worker's copy of the trainable weights, its own optimizer, and the ps side of
    a push (the outer step's momentum, the count of updates).

    Build it after the model's optimizer is built.

    Args:
      config: the local steps' settings (`sync_every`, `outer_*`).
      num_workers: the cluster's workers; a push is one worker's share of their average.
      strategy: the `ParameterServerStrategy` the model was built under.
      model: the model.
      optimizer: the model's built optimizer (its config is cloned per worker).
    """

    def __init__(self, config: LocalSGDConfig, *, num_workers: int, strategy, model, optimizer):
        self.config = config
        self.sync_every = config.sync_every
        self.num_workers = num_workers
        self._optimizer = optimizer
        self.trainable = list(model.trainable_variables)
        with tf.variable_creator_scope(_on_each_worker(strategy)):
            self.weights = [
                keras.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name=f"copy_{i}")
                for i, v in enumerate(self.trainable)
            ]
            self.optimizer = type(optimizer).from_config(optimizer.get_config())
            self.optimizer.build(self.weights)
        disable_optimizer_all_reduce(self.optimizer)
        with strategy.scope():
            self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="ps_updates")
            self._momenta = (
                [
                    tf.Variable(
                        tf.zeros(v.shape, v.dtype), trainable=False, name=f"outer_momentum_{i}"
                    )
                    for i, v in enumerate(self.trainable)
                ]
                if config.outer_optimizer != "none"
                else []
            )

    @property
    def checkpointed(self) -> dict:
        """What a checkpoint holds of it: the update count and the outer momentum."""
        held: dict = {"ps_updates": self.updates}
        if self._momenta:
            held["outer_momenta"] = self._momenta
        return held

    # ----- inside a scheduled function, on a worker ---------------------------------------
    def fetch(self) -> list[tf.Tensor]:
        """The ps weights into this worker's copy, with the rate and step of the model's
        optimizer; returns the fetched values (where the round starts from)."""
        start = [tf.identity(v.value) for v in self.trainable]
        for copy, value in zip(self.weights, start, strict=True):
            copy.assign(value)
        self.optimizer.iterations.assign(tf.convert_to_tensor(self._optimizer.iterations))
        if isinstance(self.optimizer._learning_rate, keras.Variable):
            rate = tf.convert_to_tensor(self._optimizer._learning_rate)
            self.optimizer._learning_rate.assign(rate)
        return start

    def values(self) -> list[tf.Tensor]:
        """The copy's weights now."""
        return [tf.identity(copy.value) for copy in self.weights]

    def push(self, start: list[tf.Tensor]) -> None:
        """Sends this worker's share of the round's change, (copy - `start`) / workers, to
        the ps: added to the weights, or, negated, as the outer optimizer's gradient, its
        arithmetic on the ps beside the momentum; counts the update.

        Each weight's update is one op of the tf.Variable under the Keras weight, run on
        the ps under the variable's lock. The outer momentum is read and then written,
        as a Keras optimizer's slots are under parameter_server: two workers' outer steps
        may interleave there.
        """
        outer = self.config.outer_optimizer
        share = 1.0 / self.num_workers
        for index, (weight, copy, began) in enumerate(
            zip(self.trainable, self.weights, start, strict=True)
        ):
            change = (tf.identity(copy.value) - began) * share
            variable = weight.value  # The tf.Variable on the ps.
            if outer == "none":
                variable.assign_add(change)
                continue
            with tf.device(variable.device):
                momentum = self._momenta[index]
                mu = self.config.outer_momentum
                velocity = mu * momentum.read_value() - change
                momentum.assign(velocity)
                update = -change + mu * velocity if outer == "nesterov" else velocity
                variable.assign_sub(self.config.outer_learning_rate * update)
        self.updates.assign_add(1)


class LocalStepsRunner(CoordinatorRunner):
    """A `CoordinatorRunner` whose workers take `sync_every` steps on their own copy of the
    weights between two updates of the ps (`WorkerCopies`).

    Args:
      distribution: a `parameter_server` `Distribution`.
      step: the model's `Step`.
      loop: the loop's settings (`loop.local_sgd` enabled).
    """

    def __init__(self, distribution: Distribution, step: Step, loop: LoopConfig):
        if step.variables != list(step.model.trainable_variables):
            raise ConfigError(
                f"sync_every ({loop.local_sgd.sync_every}) under parameter_server keeps a copy "
                "of the weights on each worker; a ShardedEmbedding's table is updated on the "
                "ps row by row instead. Drop sync_every, or use a keras.layers.Embedding."
            )
        super().__init__(distribution, step, loop)
        self.copies = WorkerCopies(
            loop.local_sgd,
            num_workers=distribution.num_workers,
            strategy=self.strategy,
            model=step.model,
            optimizer=step.optimizer,
        )
        self.piece_multiple = self.copies.sync_every  # Whole rounds, but at a call's end.

    def _worker_loop(self, iterator: Any, num_steps: tf.Tensor) -> dict:
        """`num_steps` steps on a worker in rounds of at most `sync_every`, each round
        fetching the weights and pushing its change; returns the worker's index and the
        metric change."""
        worker = tf.distribute.coordinator.experimental_get_current_worker_index()
        state = self.metric_state.zeros()
        every = tf.constant(self.copies.sync_every, num_steps.dtype)
        done = tf.zeros([], num_steps.dtype)
        while done < num_steps:
            steps = tf.minimum(every, num_steps - done)
            start = self.copies.fetch()
            for _ in tf.range(steps):
                copy = (self.copies.values(), self.copies.optimizer, self.copies.weights)
                state = self._update(iterator, state, copy)
            self.copies.push(start)
            done += steps
        return {"worker": worker, "state": self.metric_state.pack(state)}

    @property
    def checkpointed(self) -> dict:
        return {**super().checkpointed, **self.copies.checkpointed}

    @property
    def ps_updates(self) -> int | None:
        return int(self.copies.updates.numpy())
