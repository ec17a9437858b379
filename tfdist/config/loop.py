"""The settings of the training loop, one frozen object per concern, and their rules.

Owns `LoopConfig` — how the compiled loop runs (`steps_per_loop`, `grad_accum_steps`) —
and the objects it holds whole: `CommunicationConfig` (the gradient all-reduce),
`LocalSGDConfig` (local SGD and the DiLoCo outer step) and `CheckpointConfig` (where and
how often a run is saved). Every rule between these settings is checked here once:
rules among the settings themselves when an object is built, and the rules between the
settings and what they run on (the strategy, a loss-scaled optimizer, a model's own
`train_step`) in `check_loop_fits`, which both front doors call: the command line before
it starts anything, the trainer with the facts of the model and strategy it was given.
Standard library only.
"""

from __future__ import annotations

import dataclasses

from tfdist.config.checks import (
    COLLECTIVE_IMPLEMENTATIONS,
    COMPRESSIONS,
    OUTER_OPTIMIZERS,
    ConfigError,
    check_choice,
    check_positive,
    nearest_multiples,
)


def check_count(what: str, value: object, *, minimum: int = 1) -> int:
    """Returns `value` if it is a whole number of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{what} ({value!r}) must be a whole number of at least {minimum}.")
    return value


@dataclasses.dataclass(frozen=True)
class CommunicationConfig:
    """How gradients travel in a synchronous step.

    Attributes:
      grad_compression: `none`, `fp16` or `bf16`: the dtype on the wire.
      all_reduce_pack_bytes: pack gradients into chunks of this many bytes (0: one pack).
      collective_implementation: `auto`, `ring` or `nccl`.
      collective_timeout: seconds a collective may wait for its peers (None: forever).
    """

    grad_compression: str = "none"
    all_reduce_pack_bytes: int = 0
    collective_implementation: str = "auto"
    collective_timeout: float | None = None

    def __post_init__(self) -> None:
        check_choice("grad_compression", self.grad_compression, COMPRESSIONS)
        check_choice(
            "collective_implementation", self.collective_implementation, COLLECTIVE_IMPLEMENTATIONS
        )
        if self.all_reduce_pack_bytes < 0:
            raise ConfigError(
                f"all_reduce_pack_bytes ({self.all_reduce_pack_bytes}) must be 0 (one pack) "
                "or a positive number of bytes, e.g. 4194304."
            )
        check_positive("collective_timeout", self.collective_timeout, allow_none=True)


@dataclasses.dataclass(frozen=True)
class LocalSGDConfig:
    """Local SGD: replicas step alone and average their weights every `sync_every` steps.

    Attributes:
      sync_every: optimizer steps each replica takes on its own batches between two
        averages of the weights; 1 (and no outer optimizer) is synchronous training.
      outer_optimizer: `none` (the average becomes the weights), `sgd` or
        `nesterov`: the DiLoCo outer step, which treats the last synchronised weights
        minus the average as a gradient.
      outer_learning_rate, outer_momentum: the outer optimizer's settings.
    """

    sync_every: int = 1
    outer_optimizer: str = "none"
    outer_learning_rate: float = 0.7
    outer_momentum: float = 0.9

    def __post_init__(self) -> None:
        if (
            isinstance(self.sync_every, bool)
            or not isinstance(self.sync_every, int)
            or self.sync_every < 1
        ):
            raise ConfigError(
                f"sync_every ({self.sync_every!r}) must be a whole number of steps of at least "
                "1, e.g. 8 (1: synchronous training)."
            )
        check_choice("outer_optimizer", self.outer_optimizer, OUTER_OPTIMIZERS)
        check_positive("outer_learning_rate", self.outer_learning_rate)
        momentum = self.outer_momentum
        if (
            isinstance(momentum, bool)
            or not isinstance(momentum, (int, float))
            or not 0 <= momentum < 1
        ):
            raise ConfigError(
                f"outer_momentum ({self.outer_momentum!r}) must be at least 0 and below 1, "
                "e.g. 0.9."
            )

    @property
    def enabled(self) -> bool:
        """False when this is plain synchronous training (the gradient all-reduce)."""
        return self.sync_every > 1 or self.outer_optimizer != "none"


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Where and how often a run is saved; a rerun with the same `model_dir` resumes.

    Attributes:
      model_dir: checkpoints go to `MODEL_DIR/checkpoints` (every epoch end) and the chief
        exports `MODEL_DIR/model.keras` at the end; None keeps nothing.
      checkpoint_every_steps: also checkpoint every this many optimizer steps (needs
        `model_dir`); a rerun resumes at that step, the position in the data included.
      keep_checkpoints: the newest checkpoints kept.
      export: with `model_dir`, the chief writes `model.keras` when training ends.
    """

    model_dir: str | None = None
    checkpoint_every_steps: int | None = None
    keep_checkpoints: int = 3
    export: bool = True

    def __post_init__(self) -> None:
        if self.model_dir is not None and (
            not isinstance(self.model_dir, str) or not self.model_dir.strip()
        ):
            raise ConfigError(
                f"model_dir ({self.model_dir!r}) must be a directory path, e.g. /tmp/run."
            )
        if self.checkpoint_every_steps is not None:
            check_count("checkpoint_every_steps", self.checkpoint_every_steps)
        check_count("keep_checkpoints", self.keep_checkpoints)
        if self.checkpoint_every_steps and not self.model_dir:
            raise ConfigError(
                f"checkpoint_every_steps ({self.checkpoint_every_steps}) needs somewhere to "
                "write; pass model_dir=DIR."
            )


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """How the compiled training loop runs, with the settings it holds whole.

    Attributes:
      steps_per_loop: optimizer steps run inside one compiled call (Keras'
        `steps_per_execution`); batch hooks of callbacks run once per call.
      grad_accum_steps: micro-batches of the global batch summed into one update: the
        update covers `grad_accum_steps` global batches with one all-reduce.
      communication: the gradient all-reduce of the synchronous strategies.
      local_sgd: local SGD and the DiLoCo outer step (`sync_every`).
      checkpoint: where and how often the run is saved.
    """

    steps_per_loop: int = 32
    grad_accum_steps: int = 1
    communication: CommunicationConfig = CommunicationConfig()
    local_sgd: LocalSGDConfig = LocalSGDConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()

    def __post_init__(self) -> None:
        check_count("steps_per_loop", self.steps_per_loop)
        check_count("grad_accum_steps", self.grad_accum_steps)
        for name, kind in (
            ("communication", CommunicationConfig),
            ("local_sgd", LocalSGDConfig),
            ("checkpoint", CheckpointConfig),
        ):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(
                    f"{name} ({getattr(self, name)!r}) must be a tfdist {kind.__name__}."
                )


def check_loop_fits(
    loop: LoopConfig, *, strategy: str, loss_scaled: bool, own_train_step: str | None = None
) -> None:
    """Checks `loop` against what it runs on; raises ConfigError naming the fix.

    Args:
      loop: the loop's settings.
      strategy: the strategy kind (`parameter_server` trains asynchronously; `auto` is
        taken as a synchronous one).
      loss_scaled: the optimizer scales the loss (a `LossScaleOptimizer`, mixed_float16).
      own_train_step: the name of a model class that overrides `train_step` (its own
        step then applies its gradients through Keras), or None.
    """
    is_async = strategy == "parameter_server"
    compression = loop.communication.grad_compression
    local = loop.local_sgd
    if is_async and compression != "none":
        raise ConfigError(
            f"grad_compression ({compression!r}) compresses the all-reduce of sync strategies; "
            "parameter_server has none. Drop it or use strategy='multi_worker'."
        )
    if local.enabled:
        what = f"sync_every ({local.sync_every}) and outer_optimizer ({local.outer_optimizer!r})"
        every, sync = loop.checkpoint.checkpoint_every_steps, local.sync_every
        if not is_async and every and every % sync:
            raise ConfigError(
                f"checkpoint_every_steps ({every}) must be a multiple of sync_every ({sync}): "
                "checkpoints are taken where the replicas agree; use "
                f"{nearest_multiples(every, sync)}."
            )
        if compression != "none":
            raise ConfigError(
                f"grad_compression ({compression!r}) compresses the gradient all-reduce, which "
                f"sync_every ({local.sync_every}) replaces by averaging the weights in float32; "
                "drop grad_compression."
            )
        if loss_scaled:
            raise ConfigError(
                f"{what} cannot run with a loss-scaled optimizer (mixed_float16): its loss scale "
                "must be agreed at every step; use mixed_precision='mixed_bfloat16' or float32."
            )
    if own_train_step is None:
        return
    if is_async:
        raise ConfigError(
            f"{own_train_step} overrides train_step/test_step; under "
            "strategy='parameter_server' tfdist schedules its own step on the workers (a Keras "
            "train_step would update the metrics on the ps from every worker at once): move "
            "the custom loss into compute_loss, or use strategy='multi_worker'."
        )
    for name, value, default in (
        ("grad_accum_steps", loop.grad_accum_steps, 1),
        ("grad_compression", compression, "none"),
        ("sync_every", local.sync_every, 1),
        ("outer_optimizer", local.outer_optimizer, "none"),
    ):
        if value != default:
            raise ConfigError(
                f"{name} ({value!r}) needs tfdist's step, but {own_train_step} overrides "
                "train_step, which applies its own gradients; drop it."
            )
