"""What the trainer needs to know about a model compiled with `model.compile`.

Owns the checks and readings that concern a compiled Keras 3 model rather than the
loop: whether it overrides `train_step`/`test_step` (then those run as they are,
under the sync strategies only), the logs its metrics give (Keras' names: `loss`,
`accuracy`, ...), Keras' `validation_freq` rule, and the input context of a
split read whole by one process. The step that uses them is `tfdist.training.step`,
the loop `tfdist.training.trainer`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfdist.config import ConfigError


def overrides_steps(model: keras.Model) -> bool:
    """True when the model's class defines its own `train_step` or `test_step`."""
    cls = type(model)
    return any(
        getattr(cls, name) is not getattr(keras.Model, name) for name in ("train_step", "test_step")
    )


def check_own_steps(model: keras.Model, distribution, grad_accum_steps: int, communication) -> None:
    """A model's own `train_step` runs only where Keras' contract holds."""
    name = type(model).__name__
    if distribution.is_async:
        raise ConfigError(
            f"{name} overrides train_step/test_step; under strategy='parameter_server' "
            "tfdist schedules its own step on the workers (a Keras train_step would update "
            "the metrics on the ps from every worker at once): move the custom loss into "
            "compute_loss, or use strategy='multi_worker'."
        )
    if grad_accum_steps != 1:
        raise ConfigError(
            f"grad_accum_steps ({grad_accum_steps}) needs tfdist's step, but {name} "
            "overrides train_step, which applies its own gradients; drop grad_accum_steps."
        )
    if communication is not None and communication.grad_compression != "none":
        raise ConfigError(
            f"grad_compression ({communication.grad_compression!r}) needs tfdist's step, but "
            f"{name} overrides train_step (Keras all-reduces its gradients); drop it."
        )


def compiled_logs(
    model: keras.Model,
    totals,
    *,
    metrics_updated: bool = True,
    loss_from_totals: bool = False,
    read=None,
) -> dict:
    """The model's metric results as Keras logs them (`loss` first), as floats.

    Args:
      model: the compiled model.
      totals: the trainer's `[loss sum, correct, examples]` of the same batches.
      metrics_updated: False where the step could not update the metrics (training
        under `parameter_server` with metrics whose variables do not sum): then only
        the loss, from `totals`, is logged.
      loss_from_totals: the loss tracker was not updated (`parameter_server` workers
        do not touch it); the loss comes from `totals`.
    """
    loss_sum, _, count = (float(v) for v in np.asarray(totals))
    if not metrics_updated:
        return {"loss": loss_sum / count if count else 0.0}
    logs = {}
    for name, value in (read or model.get_metrics_result)().items():
        value = np.asarray(value)
        logs[name] = float(value) if value.size == 1 else value.tolist()
    if ("loss" not in logs or loss_from_totals) and count:
        logs["loss"] = loss_sum / count
    return {"loss": logs.pop("loss", 0.0), **logs}


def validates(epoch: int, validation_freq) -> bool:
    """Keras' rule: an int validates every that many epochs; a collection, those epochs."""
    if isinstance(validation_freq, bool):
        raise ConfigError(
            f"validation_freq ({validation_freq!r}) must be a positive integer or a list of epochs."
        )
    if isinstance(validation_freq, int):
        if validation_freq < 1:
            raise ConfigError(f"validation_freq ({validation_freq}) must be at least 1.")
        return epoch % validation_freq == 0
    try:
        return epoch in set(validation_freq)
    except TypeError:
        raise ConfigError(
            f"validation_freq ({validation_freq!r}) must be a positive integer or a list of epochs."
        ) from None


def whole_split_context() -> tf.distribute.InputContext | None:
    """The input context of one process reading a whole split (the PSS coordinator)."""
    return tf.distribute.InputContext(
        num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=1
    )


class StopVote:
    """`model.stop_training` agreed by every worker: any worker asking stops them all.

    Keras callbacks decide from logs that are the same on every worker, but a user's
    callback may ask on one worker only; under multi_worker the others would then wait
    in the next collective. One small all-reduce per epoch settles it.
    """

    def __init__(self, distribution):
        self._distribution = distribution
        self._agree = None

    def __call__(self, asked: bool) -> bool:
        distribution = self._distribution
        if distribution.is_async or distribution.num_workers < 2:
            return asked
        if self._agree is None:  # Compiled once: an eager collective is slow (and warns).
            strategy = distribution.strategy

            @tf.function
            def agree(flag):
                votes = strategy.run(lambda: tf.identity(flag))
                return strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None)

            self._agree = agree
        return float(self._agree(tf.constant(1.0 if asked else 0.0))) > 0
