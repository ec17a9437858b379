"""Keras' epochs over a stream of batches: how many steps each epoch takes.

Owns the plan Keras' `EpochIterator` follows, written down ahead so that every worker
of a cluster, and a resumed run, knows it without looking at the data: a source of
`num_batches` batches a pass gives each epoch one whole pass; with `steps_per_epoch`,
an epoch takes that many steps from a pass that goes on across epochs, ends early when
the pass runs out (the next epoch starts a new pass), and never runs past it; a source
without end (`num_batches` None, infinite) gives every epoch `steps_per_epoch` steps.
Batch hooks come once per compiled call of `steps_per_execution` steps, with Keras'
indices: the call's first step, and that step plus `steps_per_execution - 1` (even when
the pass left fewer). The stream the plan reads is the source's passes back to back:
the plan's resets always fall at a pass's end. A source of unknown length has no plan:
its epochs end when the data does (`EpochPlan.known` is False).
"""

from __future__ import annotations

import dataclasses

from tfdist.config import ConfigError


@dataclasses.dataclass(frozen=True)
class Call:
    """One compiled call of an epoch: the steps it runs and the hook indices Keras gives."""

    first: int  # Index in the epoch of its first step (`on_train_batch_begin`).
    steps: int  # Steps it runs.
    last: int  # The index `on_train_batch_end` gets: first + steps_per_execution - 1.


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    """Steps per epoch for a source of `num_batches` batches a pass, as Keras runs them.

    Args:
      num_batches: batches in one pass; None when unknown or endless.
      steps_per_epoch: Keras' `steps_per_epoch`, or None (one pass an epoch).
      endless: the source never ends (`num_batches` is then None).
    """

    num_batches: int | None
    steps_per_epoch: int | None = None
    endless: bool = False

    def __post_init__(self) -> None:
        if self.endless and self.steps_per_epoch is None:
            raise ConfigError(
                "the training data repeats forever (an infinite dataset or a .repeat()ed "
                "one); pass steps_per_epoch to say how many batches an epoch takes."
            )

    @property
    def known(self) -> bool:
        """Whether every epoch's length is known ahead (else: until the data runs out)."""
        return self.num_batches is not None or self.endless

    @property
    def params_steps(self) -> int | None:
        """What Keras reports as `params["steps"]`."""
        return self.steps_per_epoch or self.num_batches

    def epoch_lengths(self, epochs: int) -> list[int]:
        """The steps each of the first `epochs` epochs runs (the plan must be known)."""
        lengths, seen = [], 0
        for _ in range(epochs):
            if self.endless or self.num_batches is None:
                lengths.append(self.steps_per_epoch or 0)
                continue
            wanted = self.steps_per_epoch or self.num_batches
            if self.steps_per_epoch is None:
                seen = 0  # A new pass every epoch.
            steps = min(wanted, self.num_batches - seen)
            lengths.append(steps)
            seen += steps
            if seen >= self.num_batches:
                seen = 0  # The pass ran out: the next epoch starts a new one.
        return lengths

    def position(self, step: int, epochs: int) -> tuple[int, int]:
        """`(epoch, steps done in it)` of global step `step` (0-based epoch)."""
        done = 0
        for epoch, length in enumerate(self.epoch_lengths(epochs)):
            if step < done + length or epoch == epochs - 1:
                return epoch, step - done
            done += length
        return epochs, 0

    def steps_before(self, epoch: int) -> int:
        """Global steps of the epochs before `epoch` (0-based)."""
        return sum(self.epoch_lengths(epoch))


def calls(first_step: int, length: int, steps_per_execution: int) -> list[Call]:
    """The compiled calls of an epoch of `length` steps from step `first_step` on.

    Calls start at multiples of `steps_per_execution` as Keras' do (a resumed epoch's
    first call ends at the next one); the last call runs what is left of the epoch.
    """
    out, step = [], first_step
    while step < length:
        start = step - step % steps_per_execution
        end = min(length, start + steps_per_execution)
        out.append(Call(first=step, steps=end - step, last=start + steps_per_execution - 1))
        step = end
    return out
