"""Gradient communication: the all-reduce of a synchronous step, compressed and tuned.

Owns how a replica's gradients are summed across replicas: an optional cast to
float16/bfloat16 for the all-reduce and back (as Horovod's `Compression.fp16`
does), the `CommunicationOptions` (pack size, timeout, implementation), and
the count of bytes each step sends into the all-reduce. The trainer calls the
reducer in replica context and hands the summed gradients to the optimizer,
whose own all-reduce is switched off (`disable_optimizer_all_reduce`) so the
gradients are reduced exactly once. And `abort_collectives`: a worker that stops on an
error its peers cannot see fails their pending collectives with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
from tensorflow.python.eager import context as eager_context

from tfdist.config import CommunicationConfig, ConfigError

_WIRE_DTYPES = {"none": None, "fp16": tf.float16, "bf16": tf.bfloat16}
_IMPLEMENTATION = {
    "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
    "ring": tf.distribute.experimental.CommunicationImplementation.RING,
    "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
}


def collective_options(
    config: CommunicationConfig,
) -> tf.distribute.experimental.CommunicationOptions:
    """The `CommunicationOptions` of `config`: pack size, timeout, implementation."""
    return tf.distribute.experimental.CommunicationOptions(
        bytes_per_pack=config.all_reduce_pack_bytes,
        timeout_seconds=config.collective_timeout,
        implementation=_IMPLEMENTATION[config.collective_implementation],
    )


class GradientReducer:
    """Sums gradients across replicas; records the bytes one step puts on the wire."""

    def __init__(self, config: CommunicationConfig):
        self.config = config
        self._wire_dtype = _WIRE_DTYPES[config.grad_compression]
        self._options = collective_options(config)
        self.bytes_per_step = 0

    def _to_wire(self, gradient):
        if self._wire_dtype is None or not gradient.dtype.is_floating:
            return gradient
        if isinstance(gradient, tf.IndexedSlices):
            values = tf.cast(gradient.values, self._wire_dtype)
            return tf.IndexedSlices(values, gradient.indices, gradient.dense_shape)
        return tf.cast(gradient, self._wire_dtype)

    def __call__(self, gradients: Sequence) -> list:
        """All-reduces (SUM) the non-None gradients in replica context; keeps Nones in place.

        An Embedding's gradient stays `tf.IndexedSlices`, one row per lookup, gathered
        across replicas as TensorFlow's all-reduce gathers them: the optimizer sees the
        rows Keras' own step gives it for the whole batch (Keras' Adam squares each row
        before adding duplicates up, so a densified gradient would move it elsewhere).
        """
        present = [i for i, g in enumerate(gradients) if g is not None]
        original = [gradients[i] for i in present]
        wire = [self._to_wire(g) for g in original]
        self.bytes_per_step = sum(_static_bytes(w) for w in wire)
        context = tf.distribute.get_replica_context()
        if context is not None and wire:
            wire = context.all_reduce(tf.distribute.ReduceOp.SUM, wire, options=self._options)
        result: list = list(gradients)
        for i, w, g in zip(present, wire, original, strict=False):
            result[i] = _from_wire(w, g.dtype)
        return result


def _static_bytes(gradient) -> int:
    """Bytes of a gradient on the wire; an IndexedSlices' rows count once their number is known."""
    if isinstance(gradient, tf.IndexedSlices):
        return _static_bytes(gradient.values) + _static_bytes(gradient.indices)
    return int(gradient.shape.num_elements() or 0) * gradient.dtype.size


def _from_wire(gradient, dtype: tf.DType):
    if gradient.dtype == dtype:
        return gradient
    if isinstance(gradient, tf.IndexedSlices):
        values = tf.cast(gradient.values, dtype)
        return tf.IndexedSlices(values, gradient.indices, gradient.dense_shape)
    return tf.cast(gradient, dtype)


def disable_optimizer_all_reduce(optimizer) -> None:
    """Stops a Keras 3 optimizer (and a LossScaleOptimizer's inner one) from all-reducing.

    Keras 3's TensorFlow optimizer sums gradients across replicas inside
    `apply_gradients` (`_all_reduce_sum_gradients`). The trainer reduces them
    itself, before loss-scale finiteness checks and with compression, so the
    optimizer's own reduction would count them twice.
    """
    for target in (optimizer, getattr(optimizer, "inner_optimizer", None)):
        if target is None:
            continue
        if not hasattr(target, "_all_reduce_sum_gradients"):
            raise ConfigError(
                f"optimizer {type(target).__name__} has no _all_reduce_sum_gradients; this "
                "Keras version moved it. Pin keras<3.16 or report this to tfdist."
            )
        target._all_reduce_sum_gradients = lambda grads_and_vars: list(grads_and_vars)


STOP_REASON_KEY = "tfdist/stop_reason"


def abort_collectives(reason: str) -> None:
    """Fails this process's collectives, pending and future, with `reason` (UNAVAILABLE).

    For a `multi_worker` task that stops on an error only it saw (a bad label in its part
    of the data): a peer waiting for it in an all-reduce gets an error carrying `reason`
    within moments, instead of waiting until this process exits. Collectives of this
    process stay failed until it restarts.

    The reason is also published in the cluster's coordination service
    (`published_stop_reason`): a peer whose collective started after this one stopped,
    or failed on the lost heartbeat instead, reads it there.
    """
    context = eager_context.context()
    try:
        try:
            context.delete_config_key_value(STOP_REASON_KEY)
        except (tf.errors.OpError, RuntimeError):
            pass  # Nothing published before.
        context.set_config_key_value(STOP_REASON_KEY, reason)
    except (tf.errors.OpError, RuntimeError):
        pass  # No coordination service (one process): the abort alone says it.
    context.abort_collective_ops(tf.errors.UNAVAILABLE, reason)


def published_stop_reason(timeout_ms: int = 2000) -> str | None:
    """The reason a peer published when it stopped its collectives, or None."""
    try:
        found: str = eager_context.context().get_config_key_value(STOP_REASON_KEY, timeout_ms)
    except (tf.errors.OpError, RuntimeError):
        return None
    return found or None
