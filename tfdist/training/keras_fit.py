"""The Keras front door: `tfdist.fit`, `tfdist.evaluate` and `tfdist.predict`.

Owns Keras' `Model.fit`/`evaluate`/`predict` signatures and meanings for a model built
and compiled inside a strategy's scope, under every strategy (`one_device`, `mirrored`,
`multi_worker`, `parameter_server`): Keras-style inputs become dataset functions of the
data layer (`tfdist.data.keras_inputs`), so each example is read once per epoch across
workers; tfdist's own keyword arguments become one `LoopConfig` (`loop_config`, the one
place they are read); training is the `Trainer` of the model, kept while everything it
was built from is unchanged (`compile()`, optimizer, trainable state, strategy, loop).
`batch_size` is the global batch, as in Keras under a strategy; the last partial batch of
an epoch is dropped when training (so every replica steps in lockstep) and kept by
`evaluate`/`predict`.

Example:

    dist = tfdist.make_strategy("auto")
    with dist.scope():
        model = keras.Sequential([...])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    history = tfdist.fit(model, x, y, batch_size=64, epochs=5, validation_split=0.1)
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import keras
import tensorflow as tf

from tfdist.config import (
    CheckpointConfig,
    CommunicationConfig,
    ConfigError,
    LocalSGDConfig,
    LoopConfig,
    check_count,
    check_positive,
)
from tfdist.data.chief_service import is_script_batches
from tfdist.data.keras_inputs import (
    arrays_source,
    check_batch_size,
    dataset_batch_size,
    dataset_source,
    inference_source,
    is_dataset,
)
from tfdist.data.pipeline import DatasetFn, DataSource, make_dataset_fn
from tfdist.distribute.strategies import Distribution, TaskRole, distribution_of
from tfdist.training.callbacks import check_verbose
from tfdist.training.chief_inputs import fit_from_chief
from tfdist.training.history import History
from tfdist.training.trainer import BuiltFrom, Trainer, check_compiled

_LOCAL = TaskRole("worker", 0, True)


def _distribution(model: keras.Model, distribution: Distribution | None) -> Distribution:
    """The Distribution whose scope built `model` (or the one given, which must match)."""
    strategy = model.distribute_strategy
    if distribution is not None:
        if strategy is not distribution.strategy and distribution_of(strategy) is not None:
            raise ConfigError(
                f"model {model.name!r} was built under another strategy than "
                f"distribution ({distribution.kind!r}); build and compile it inside "
                "`with distribution.scope():`."
            )
        return distribution
    found = distribution_of(strategy)
    if found is not None:
        return found
    if strategy is tf.distribute.get_strategy():  # Built outside any scope: one device.
        return Distribution(
            kind="one_device", strategy=strategy, coordinator=None, role=_LOCAL, num_workers=1
        )
    raise ConfigError(
        f"model {model.name!r} was built under a strategy tfdist did not make; build it "
        "inside `with dist.scope():` of `dist = tfdist.make_strategy(...)`, or pass "
        "distribution=."
    )


def loop_config(
    *,
    model_dir: str | None = None,
    checkpoint_every_steps: int | None = None,
    keep_checkpoints: int = 3,
    steps_per_loop: int = 32,
    grad_accum_steps: int = 1,
    communication: CommunicationConfig | None = None,
    sync_every: int = 1,
    outer_optimizer: str = "none",
    outer_learning_rate: float = 0.7,
    outer_momentum: float = 0.9,
) -> LoopConfig:
    """`tfdist.fit`'s keyword arguments as the `LoopConfig` the Trainer takes."""
    return LoopConfig(
        steps_per_loop=steps_per_loop,
        grad_accum_steps=grad_accum_steps,
        communication=communication or CommunicationConfig(),
        local_sgd=LocalSGDConfig(
            sync_every=sync_every,
            outer_optimizer=outer_optimizer,
            outer_learning_rate=outer_learning_rate,
            outer_momentum=outer_momentum,
        ),
        checkpoint=CheckpointConfig(
            model_dir=model_dir,
            checkpoint_every_steps=checkpoint_every_steps,
            keep_checkpoints=keep_checkpoints,
        ),
    )


def trainer_for(model: keras.Model, distribution: Distribution, loop: LoopConfig) -> Trainer:
    """The model's Trainer for `loop`: the cached one while all it was built from holds."""
    key = (distribution.strategy, BuiltFrom(model), loop)
    cached = getattr(model, "_tfdist_trainer", None)
    if cached is not None and _same(cached[0], key):
        found: Trainer = cached[1]
        return found
    trainer = Trainer(distribution, model, loop)
    model._tfdist_trainer = (key, trainer)
    return trainer


def _cached_or_new(model: keras.Model, distribution: Distribution) -> Trainer:
    """For evaluate: the fit's Trainer when it still fits the model, else a new one."""
    cached = getattr(model, "_tfdist_trainer", None)
    if cached is not None and _same(cached[0][:2], (distribution.strategy, BuiltFrom(model))):
        found: Trainer = cached[1]
        return found
    return trainer_for(model, distribution, LoopConfig())


def _same(cached: tuple, key: tuple) -> bool:
    """Keys of `trainer_for`: the same strategy object, build and loop settings."""
    return cached[0] is key[0] and all(a == b for a, b in zip(cached[1:], key[1:], strict=True))


def _source_and_batch(
    x: Any,
    y: Any,
    *,
    batch_size: int | None,
    sample_weight: Any,
    class_weight: dict[int, float] | None,
    validation_split: float,
    validation_data: Any,
) -> tuple[DataSource, int]:
    if is_dataset(x):
        if y is not None or sample_weight is not None or class_weight is not None:
            raise ConfigError(
                "x is a tf.data.Dataset: give its targets and weights inside "
                "it ((x, y) or (x, y, sample_weight) elements), not as y=, "
                "sample_weight= or class_weight=."
            )
        if validation_split:
            raise ConfigError(
                "validation_split needs arrays; with a dataset pass validation_data= instead."
            )
        if batch_size is not None:
            raise ConfigError(
                "x is a batched tf.data.Dataset: its batch is the global batch; drop batch_size=."
            )
        return dataset_source(x, validation=validation_data)
    source = arrays_source(
        x,
        y,
        sample_weight=sample_weight,
        class_weight=class_weight,
        validation_split=validation_split,
        validation_data=validation_data,
    )
    return source, check_batch_size(batch_size)


def _steps(source: DataSource, batch: int, steps_per_epoch: int | None) -> int:
    if steps_per_epoch is not None:
        return check_count("steps_per_epoch", steps_per_epoch)
    steps: int = source.num_train // batch
    if steps == 0:
        raise ConfigError(
            f"batch_size ({batch}) is more than the {source.num_train} training examples; "
            f"use batch_size={max(1, source.num_train)} or less."
        )
    return steps


def _resume_dir(
    callbacks: Sequence[keras.callbacks.Callback] | None, model_dir: str | None
) -> tuple[list[keras.callbacks.Callback], str | None]:
    """The user's callbacks, BackupAndRestore becoming tfdist's model_dir resume."""
    kept = []
    for callback in callbacks or ():
        if isinstance(callback, keras.callbacks.BackupAndRestore):
            backup = getattr(callback, "backup_dir", None)
            if model_dir and backup and str(backup) != str(model_dir):
                raise ConfigError(
                    f"BackupAndRestore(backup_dir={backup!r}) and model_dir={model_dir!r} "
                    "both say where to resume from; keep one of them."
                )
            model_dir = model_dir or backup  # tfdist's exact resume is its equivalent.
            continue
        kept.append(callback)
    return kept, model_dir


def fit(
    model: keras.Model,
    x: Any = None,
    y: Any = None,
    *,
    batch_size: int | None = None,
    epochs: int = 1,
    verbose: int | str = "auto",
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    validation_split: float = 0.0,
    validation_data: Any = None,
    shuffle: bool = True,
    class_weight: dict[int, float] | None = None,
    sample_weight: Any = None,
    initial_epoch: int = 0,
    steps_per_epoch: int | None = None,
    validation_steps: int | None = None,
    validation_freq: int | Collection[int] = 1,
    distribution: Distribution | None = None,
    model_dir: str | None = None,
    checkpoint_every_steps: int | None = None,
    keep_checkpoints: int = 3,
    steps_per_loop: int = 32,
    grad_accum_steps: int = 1,
    communication: CommunicationConfig | None = None,
    shard_policy: str = "auto",
    seed: int = 0,
    sync_every: int = 1,
    outer_optimizer: str = "none",
    outer_learning_rate: float = 0.7,
    outer_momentum: float = 0.9,
) -> History:
    """Trains a compiled Keras model as `model.fit` would, under its tfdist strategy.

    Arguments up to `validation_freq` are Keras' (`batch_size` is the global batch;
    `validation_steps` caps the validation batches of a dataset). tfdist's own:

    Args:
      distribution: the strategy the model was built under; by default the one of its
        scope (`tfdist.make_strategy(...).scope()`).
      model_dir: checkpoints and exact resume (a rerun continues where the last
        checkpoint left off, mid-epoch included); `model.keras` is written at the end.
        `keras.callbacks.BackupAndRestore(backup_dir)` means the same.
      checkpoint_every_steps: also checkpoint every this many steps (needs `model_dir`).
      keep_checkpoints: the newest checkpoints kept.
      steps_per_loop: optimizer steps inside one compiled call (Keras'
        `steps_per_execution`); batch hooks of callbacks run once per call.
      grad_accum_steps: micro-batches of `batch_size` summed into one update.
      communication: gradient compression and collective options (sync strategies).
      shard_policy: how workers split the arrays (`tfdist.data.sharding`).
      seed: the shuffling seed (each epoch reshuffles, deterministically).
      sync_every, outer_optimizer, outer_learning_rate, outer_momentum: local SGD and the
        DiLoCo outer step (`mirrored`, `multi_worker`): replicas take `sync_every` steps
        alone, then average (`tfdist.training.local_sgd`).

    Returns:
      tfdist's `History`: Keras' (`history.history`, also `model.history`) with tfdist's
      record of the run (`final_step`, `restored_from`, `timings`, `steps_by_worker`).
    """
    check_compiled(model, "fit")
    check_positive("epochs", epochs)
    distribution = _distribution(model, distribution)
    callbacks, model_dir = _resume_dir(callbacks, model_dir)
    loop = loop_config(
        model_dir=model_dir,
        checkpoint_every_steps=checkpoint_every_steps,
        keep_checkpoints=keep_checkpoints,
        steps_per_loop=steps_per_loop,
        grad_accum_steps=grad_accum_steps,
        communication=communication,
        sync_every=sync_every,
        outer_optimizer=outer_optimizer,
        outer_learning_rate=outer_learning_rate,
        outer_momentum=outer_momentum,
    )
    if distribution.is_async and is_script_batches(x):
        # Parameter server: a dataset, PyDataset or generator the script built cannot be
        # rebuilt on the workers; the chief serves its batches (tfdist.training.chief_inputs).
        return fit_from_chief(
            trainer_for(model, distribution, loop),
            x,
            y=y,
            batch_size=batch_size,
            sample_weight=sample_weight,
            class_weight=class_weight,
            validation_split=validation_split,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            validation_data=validation_data,
            validation_steps=validation_steps,
            validation_freq=validation_freq,
            callbacks=callbacks,
            verbose=verbose,
            initial_epoch=initial_epoch,
        )
    if validation_steps is not None and is_dataset(validation_data):
        validation_data = validation_data.take(check_positive("validation_steps", validation_steps))
    source, batch = _source_and_batch(
        x,
        y,
        batch_size=batch_size,
        sample_weight=sample_weight,
        class_weight=class_weight,
        validation_split=validation_split,
        validation_data=validation_data,
    )
    steps = _steps(source, batch, steps_per_epoch)
    train_fn = make_dataset_fn(
        source,
        "train",
        global_batch_size=batch,
        training=True,
        seed=seed,
        shuffle=shuffle and not is_dataset(x),
        shard_policy=shard_policy,
        steps_per_epoch=steps * grad_accum_steps,
    )
    validation_fn = (
        make_dataset_fn(source, "validation", global_batch_size=batch, training=False)
        if source.num_validation
        else None
    )
    trainer = trainer_for(model, distribution, loop)
    verbose = check_verbose(verbose) if distribution.role.is_chief else 0
    return trainer.fit(
        train_fn,
        epochs=epochs,
        steps_per_epoch=steps,
        global_batch_size=batch,
        validation_fn=validation_fn,
        callbacks=callbacks,
        verbose=verbose,
        validation_freq=validation_freq,
        initial_epoch=initial_epoch,
    )


def _inference_fn(
    x: Any, y: Any, sample_weight: Any, batch_size: int | None, name: str
) -> DatasetFn:
    source = inference_source(x, y, sample_weight=sample_weight, name=name)
    if is_dataset(x):
        if batch_size is not None:
            raise ConfigError(
                f"x is a batched tf.data.Dataset: its batch is the global batch; "
                f"drop batch_size= from tfdist.{name}."
            )
        found = dataset_batch_size(x)
        if found is None:
            raise ConfigError(f"x of tfdist.{name} is not batched; batch it, e.g. x.batch(64).")
        batch = found
    else:
        batch = check_batch_size(batch_size)
    return make_dataset_fn(source, "train", global_batch_size=batch, training=False)


def _take(x: Any, steps: int | None) -> Any:
    """Keras' `steps` of evaluate/predict: the first batches of a dataset."""
    if steps is None:
        return x
    if not is_dataset(x):
        raise ConfigError(
            "steps= counts the batches of a dataset; with arrays give fewer rows instead."
        )
    return x.take(check_positive("steps", steps))


def evaluate(
    model: keras.Model,
    x: Any = None,
    y: Any = None,
    *,
    batch_size: int | None = None,
    verbose: int | str = "auto",
    sample_weight: Any = None,
    steps: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    return_dict: bool = False,
    distribution: Distribution | None = None,
) -> Any:
    """Evaluates a compiled model as `model.evaluate` would, every example exactly once.

    Each worker reads its part of `x` once (the last partial batch kept, no padding);
    metrics are summed over all replicas and workers. Under `parameter_server` the
    coordinator evaluates the whole split itself.

    Returns:
      The loss and metrics: a dict with `return_dict`, else a list (a scalar when
      there is only the loss), in `model.metrics_names` order.
    """
    check_compiled(model, "evaluate")
    del verbose, callbacks
    distribution = _distribution(model, distribution)
    dataset_fn = _inference_fn(_take(x, steps), y, sample_weight, batch_size, "evaluate")
    logs = _cached_or_new(model, distribution).evaluate(dataset_fn)
    if return_dict:
        return logs
    return model._flatten_metrics_in_order(logs)


def predict(
    model: keras.Model,
    x: Any,
    *,
    batch_size: int | None = None,
    verbose: int | str = "auto",
    steps: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    distribution: Distribution | None = None,
) -> Any:
    """Predicts as `model.predict` would: NumPy outputs in the order of `x`.

    Each worker predicts a contiguous part of `x` once and the parts are gathered on
    every worker; one process with several replicas splits each batch between them;
    under `parameter_server` the coordinator predicts itself.
    """
    del verbose, callbacks
    if not isinstance(model, keras.Model):
        raise ConfigError(f"tfdist.predict takes a keras.Model, got {type(model).__name__}.")
    distribution = _distribution(model, distribution)
    from tfdist.training.prediction import predict_arrays

    return predict_arrays(model, distribution, _take(x, steps), batch_size=batch_size)
