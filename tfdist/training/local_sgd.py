"""Local SGD with periodic model averaging, and the DiLoCo outer step.

Owns what changes when replicas synchronise every `sync_every` (H) steps
instead of every step: each replica applies its own gradients (no all-reduce),
so the components of each mirrored variable drift apart; every H steps one
all-reduce (MEAN) averages them again. With an outer optimizer (DiLoCo,
Douillard et al., 2023) the average is not taken as is: `anchor - average`
is an outer gradient, applied to the last synchronised weights (the anchor) by
SGD or Nesterov momentum.

How it works under `mirrored` and `multi_worker`: Keras 3 creates weights
and optimizer slots with aggregation `none`, so an update made in replica
context (or in the optimizer's per-device update) writes only that replica's
component. The trainer's gradient all-reduce is what normally keeps them
equal; here a `LocalGradients` reducer takes its place (it only rescales the
replica's gradient to the mean over its own batch), and `LocalSGD.sync`
reads each replica's components, all-reduces them in one call and writes the
result back to every component.

Optimizer slots (Adam's moments, momentum) stay local between syncs and are
averaged only where the run needs one state: before a checkpoint, a preemption or a
stop, and at every epoch end (`settle`). A checkpoint stores one copy of a mirrored
variable, so with slots never averaged a resumed run would start every replica from
the first replica's slots and differ from the run it resumes; averaged there, a
checkpoint holds the whole state and resume stays exact. Not at every sync, because
bytes count at these sizes: one all-reduce of the MLP's weights takes 3.2 ms on
loopback here, with Adam's two slots 7.4 ms (`benchmarks/collective_latency.py`). A
preemption stop between those points does not average them (the uninterrupted run
would not have): every replica's slots are gathered, as they are, into the checkpoint
(`snapshot`; R copies of the slots on each replica, R the replicas in sync), and the
resumed run hands each replica its own. The DiLoCo outer momentum is checkpointed; the
anchor equals the weights at every synchronisation point, so it is set from them when
`fit` starts.

Synchronisation points are the multiples of H and the end of each epoch (so
validation, epoch checkpoints and the exported model see one model). Segments (after
which the controller may checkpoint or stop) end only where a call ends at a
synchronisation point (`segments`), so checkpoints and preemption stops land where the
replicas agree, and an exact resume stays exact. `LocalSGDRunner` is the runner the controller
(`tfdist.training.controller`) drives; the per-replica step is `tfdist.training.step`'s.
"""

from __future__ import annotations

import tensorflow as tf

from tfdist.config import LocalSGDConfig
from tfdist.data.epochs import Call
from tfdist.distribute.communication import collective_options
from tfdist.training.runners import SyncRunner
from tfdist.training.schedule import segments_ending
from tfdist.training.step import scaled


class LocalGradients:
    """Stands in for `GradientReducer`: a replica's gradients, not summed with others.

    The step averages the loss over the global batch, so a replica's gradient is
    `1 / num_replicas` of the mean over its own batch; this scales it back.
    """

    bytes_per_step = 0

    def __init__(self, num_replicas: int):
        self._factor = float(num_replicas)

    def __call__(self, gradients):
        if self._factor == 1.0:
            return list(gradients)
        return [scaled(g, self._factor) for g in gradients]


def _local_copy(variable, name: str, replicas: int | None = None) -> tf.Variable:
    """A mirrored variable like `variable` whose replica-context writes stay local; with
    `replicas`, one row of its shape per replica."""
    shape = list(variable.shape) if replicas is None else [replicas, *variable.shape]
    return tf.Variable(
        tf.zeros(shape, variable.dtype),
        trainable=False,
        name=name,
        aggregation=tf.VariableAggregation.NONE,
    )


def _is_float(variable) -> bool:
    return tf.as_dtype(variable.dtype).is_floating


class LocalSGD:
    """Averages the replicas' weights (and slots) every `sync_every` steps.

    Build it in the strategy's scope, after the optimizer is built.

    Args:
      config: the settings (`config.enabled` must be true).
      strategy: the sync strategy the model was built under.
      model: the Keras model.
      optimizer: the built Keras optimizer.
      communication: collective options of the averaging all-reduce.
    """

    def __init__(self, config: LocalSGDConfig, *, strategy, model, optimizer, communication):
        self.config = config
        self.sync_every = config.sync_every
        self.reducer = LocalGradients(strategy.num_replicas_in_sync)
        self._strategy = strategy
        self._options = collective_options(communication)
        self._trainable = list(model.trainable_variables)
        trainable_ids = {id(v) for v in self._trainable}
        self._others = [v for v in model.variables if id(v) not in trainable_ids and _is_float(v)]
        # Slots: Keras creates them with aggregation "none"; iterations and the learning
        # rate are "only_first_replica" and equal on every replica anyway.
        self._slots = [v for v in optimizer.variables if v.aggregation == "none" and _is_float(v)]
        self._anchors: list[tf.Variable] = []
        self._momenta: list[tf.Variable] = []
        if config.outer_optimizer != "none":
            self._anchors = [
                _local_copy(v, f"outer_anchor_{i}") for i, v in enumerate(self._trainable)
            ]
            self._momenta = [
                _local_copy(v, f"outer_momentum_{i}") for i, v in enumerate(self._trainable)
            ]
        # Every replica's slots at a preemption stop (row i: replica i's), and whether the
        # newest save holds them (1) or the slots were averaged there (0).
        replicas = strategy.num_replicas_in_sync
        self._replica_slots = [
            _local_copy(v, f"replica_slots_{i}", replicas) for i, v in enumerate(self._slots)
        ]
        self._snapshot_held = tf.Variable(0, dtype=tf.int64, trainable=False, name="snapshot")
        # The optimizer step the loop is at: set by `start`, advanced by `loop`.
        self._position = tf.Variable(0, dtype=tf.int64, trainable=False, name="local_sgd_step")
        self._sync_fn = tf.function(lambda: strategy.run(self._sync_replica, args=(True,)))
        self._slots_fn = tf.function(lambda: strategy.run(self._average_slots))
        self._start_fn = tf.function(lambda: strategy.run(self._start_replica))
        self._gather_fn = tf.function(lambda: strategy.run(self._gather_slots))
        self._scatter_fn = tf.function(lambda: strategy.run(self._scatter_slots))

    @property
    def state(self) -> tf.train.Checkpoint | None:
        """What a checkpoint must hold beyond model and optimizer (None: nothing)."""
        held: dict = {}
        if self._momenta:
            held["momenta"] = self._momenta
        if self._slots:
            held.update(replica_slots=self._replica_slots, snapshot=self._snapshot_held)
        return tf.train.Checkpoint(**held) if held else None

    # ----- in replica context -------------------------------------------------------------
    def _start_replica(self):
        for anchor, weight in zip(self._anchors, self._trainable, strict=False):
            anchor.assign(tf.identity(weight.value))

    def _mean(self, variables):
        """The MEAN over replicas of each variable's component on this replica."""
        context = tf.distribute.get_replica_context()
        local = [tf.identity(v.value) for v in variables]  # This replica's components.
        return context.all_reduce(tf.distribute.ReduceOp.MEAN, local, options=self._options)

    def _average_slots(self):
        for slot, mean in zip(
            self._slots, self._mean(self._slots) if self._slots else (), strict=False
        ):
            slot.assign(mean)

    def _gather_slots(self):
        context = tf.distribute.get_replica_context()
        local = [tf.expand_dims(tf.identity(v.value), 0) for v in self._slots]
        rows = context.all_gather(local, axis=0, options=self._options)
        for packed, value in zip(self._replica_slots, rows, strict=True):
            packed.assign(value)

    def _scatter_slots(self):
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        for slot, packed in zip(self._slots, self._replica_slots, strict=True):
            slot.assign(tf.gather(packed.value(), replica))

    def _sync_replica(self, with_slots: bool = False):
        variables = self._trainable + self._others + (self._slots if with_slots else [])
        means = self._mean(variables)
        count = len(self._trainable)
        if self._anchors:
            means[:count] = [self._outer_step(i, mean) for i, mean in enumerate(means[:count])]
        for variable, mean in zip(variables, means, strict=False):
            variable.assign(mean)

    def _outer_step(self, index: int, mean):
        """DiLoCo: the anchor moved by the outer optimizer along `anchor - mean`."""
        anchor, momentum = self._anchors[index], self._momenta[index]
        outer_gradient = tf.identity(anchor.value()) - mean
        mu = self.config.outer_momentum
        velocity = mu * momentum.value() + outer_gradient
        momentum.assign(velocity)
        if self.config.outer_optimizer == "nesterov":
            update = outer_gradient + mu * velocity
        else:
            update = velocity
        new = anchor.value() - self.config.outer_learning_rate * update
        anchor.assign(new)
        return new

    # ----- called by the trainer ----------------------------------------------------------
    def start(self, step: int) -> None:
        """Call when `fit` starts at `step` (after a restore): sets position and anchors,
        and gives each replica its own slots if the checkpoint held a snapshot."""
        self._position.assign(step)
        if self._anchors:
            self._start_fn()
        if self._slots and int(self._snapshot_held.numpy()):
            self._scatter_fn()

    def sync(self) -> None:
        """Averages weights and slots now (every task must call it: it is a collective)."""
        self._sync_fn()

    def settle(self, step: int, *, slots: bool, snapshot: bool = False) -> None:
        """After a segment that ended at `step`: the weights, and with `slots` the
        optimizer's slots too, leave it identical on every replica; with `snapshot` (a
        stop the run resumes from, where `slots` is false) every replica's slots are kept
        as they are for the checkpoint instead.

        The loop synced the weights if `step` is a multiple of H, else they are
        averaged here, slots included (a collective: every task calls it alike).
        """
        if step % self.sync_every:
            self.sync()
            self._snapshot_held.assign(0)
        elif slots and self._slots:
            self._slots_fn()
            self._snapshot_held.assign(0)
        elif snapshot and self._slots:
            self._gather_fn()
            self._snapshot_held.assign(1)

    def loop(self, update, num_updates) -> None:
        """`num_updates` local updates (`update()` each), averaging at multiples of H.

        Runs inside the runner's compiled call.
        """
        every = tf.constant(self.sync_every, tf.int64)
        first = self._position.read_value()
        total = tf.cast(num_updates, tf.int64)
        done = tf.constant(0, tf.int64)
        while done < total:
            chunk = tf.minimum(total - done, every - (first + done) % every)
            for _ in tf.range(chunk):
                update()
            done += chunk
            self._position.assign(first + done)
            if (first + done) % every == 0:
                self._strategy.run(self._sync_replica)


class LocalSGDRunner(SyncRunner):
    """A `SyncRunner` whose replicas step alone and average every `sync_every` steps.

    Its `Step` reduces with `LocalGradients` (no all-reduce); segments end at
    synchronisation points, where the controller may checkpoint or stop.

    Args:
      distribution: a synchronous strategy's `Distribution`.
      step: the model's `Step`, built with `LocalGradients`.
      loop: the loop's settings (`loop.local_sgd` enabled).
    """

    def __init__(self, distribution, step, loop):
        super().__init__(distribution, step, loop)
        with self.strategy.scope():
            self.averaging = LocalSGD(
                loop.local_sgd,
                strategy=self.strategy,
                model=step.model,
                optimizer=step.optimizer,
                communication=loop.communication,
            )

    def _train_loop(self, iterator, num_steps, dynamic):
        self.averaging.loop(lambda: self._update(iterator), num_steps)
        return self._logs(), num_steps

    def segments(self, calls: list[Call], epoch_start: int, every: int | None) -> list:
        """Segments end where a call ends at a synchronisation point (and at the epoch's
        end, where the controller settles the replicas too): checkpoints and stops then
        land where the replicas agree."""
        sync = self.averaging.sync_every
        return segments_ending(calls, epoch_start, lambda step: step % sync == 0)

    def start(self, step: int) -> None:
        self.averaging.start(step)

    def after_segment(self, step: int, *, settle: bool, snapshot: bool = False) -> None:
        self.averaging.settle(step, slots=settle, snapshot=snapshot)

    @property
    def checkpointed(self) -> dict:
        state = self.averaging.state
        return {"local_sgd": state} if state is not None else {}
