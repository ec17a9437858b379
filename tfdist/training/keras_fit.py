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

import contextlib
import sys
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import keras

from tfdist.config import (
    CheckpointConfig,
    CommunicationConfig,
    ConfigError,
    LocalSGDConfig,
    LoopConfig,
    check_count,
)
from tfdist.data.chief_service import is_script_batches
from tfdist.data.global_batches import GlobalBatches
from tfdist.distribute.cluster import read_tf_config
from tfdist.distribute.strategies import Distribution, TaskRole, adopt, distribution_of
from tfdist.training.callbacks import callback_list, check_callbacks, check_verbose
from tfdist.training.chief_inputs import fit_from_chief
from tfdist.training.data_errors import data_errors
from tfdist.training.fit_inputs import FitInputs, fit_inputs, inference_inputs
from tfdist.training.history import History
from tfdist.training.prediction import predict_batches
from tfdist.training.preemption import Preempted
from tfdist.training.trainer import (
    BuiltFrom,
    Trainer,
    build_model_variables,
    check_compiled,
    input_spec,
)

_LOCAL = TaskRole("worker", 0, True)


def _distribution(model: keras.Model, distribution: Distribution | None) -> Distribution:
    """The Distribution whose scope built `model` (or the one given, which must match).

    A model built under TensorFlow's own strategy classes is adopted as it is
    (`tfdist.distribute.strategies.adopt`); one built outside any scope trains on one
    device, unless TF_CONFIG names a cluster of several tasks: then every task would train
    alone and write as chief, so that is an error.
    """
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
    if getattr(model, "_distribute_strategy", None) is None:  # Built outside any scope.
        cluster = read_tf_config()
        if cluster is not None and sum(len(tasks) for tasks in cluster.jobs.values()) > 1:
            raise ConfigError(
                f"model {model.name!r} was built outside any strategy's scope, but TF_CONFIG "
                f"names a cluster of {sum(len(t) for t in cluster.jobs.values())} tasks "
                f"({', '.join(cluster.jobs)}): each would train alone and write as chief. "
                "Build and compile it inside `with dist.scope():` of "
                "`dist = tfdist.make_strategy()` (or of TensorFlow's own strategy)."
            )
        return Distribution(
            kind="one_device", strategy=strategy, coordinator=None, role=_LOCAL, num_workers=1
        )
    return adopt(strategy)


def loop_config(
    *,
    model_dir: str | None = None,
    checkpoint_every_steps: int | None = None,
    keep_checkpoints: int = 3,
    steps_per_loop: int = 1,
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


def fit(
    model: keras.Model,
    x: Any = None,
    y: Any = None,
    batch_size: int | None = None,
    epochs: int = 1,
    verbose: int | str = "auto",
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    validation_split: float = 0.0,
    validation_data: Any = None,
    shuffle: bool | str = True,
    class_weight: dict[int, float] | None = None,
    sample_weight: Any = None,
    initial_epoch: int = 0,
    steps_per_epoch: int | None = None,
    validation_steps: int | None = None,
    validation_batch_size: int | None = None,
    validation_freq: int | Collection[int] = 1,
    *,
    distribution: Distribution | None = None,
    model_dir: str | None = None,
    checkpoint_every_steps: int | None = None,
    keep_checkpoints: int = 3,
    steps_per_loop: int | None = None,
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
        (Keras' `BackupAndRestore` keeps Keras' own meaning: weights at epoch ends or every
        `save_freq` batches, a resumed fit restarting that epoch, the backup deleted when
        the fit ends.)
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
        alone, then average (`tfdist.training.local_sgd`); under `parameter_server`, local
        steps: each worker takes `sync_every` steps on its own copy of the weights, then
        sends the ps one update, through the outer step if any
        (`tfdist.training.ps_local_steps`).

    Returns:
      tfdist's `History`: Keras' (`history.history`, also `model.history`) with tfdist's
      record of the run (`final_step`, `restored_from`, `timings`, `steps_by_worker`,
      `ps_updates`).
    """
    check_compiled(model, "fit")
    check_count("epochs", epochs)
    distribution = _distribution(model, distribution)
    loop = loop_config(
        model_dir=model_dir,
        checkpoint_every_steps=checkpoint_every_steps,
        keep_checkpoints=keep_checkpoints,
        steps_per_loop=steps_per_loop or _steps_per_execution(model),
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
        with (
            stops_in_one_line(),
            data_errors(model, distribution, x, y, validation_data=validation_data),
        ):
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
                callbacks=check_callbacks(callbacks),
                verbose=verbose,
                initial_epoch=initial_epoch,
            )
    inputs = fit_inputs(
        distribution,
        x,
        y,
        batch_size=batch_size,
        sample_weight=sample_weight,
        class_weight=class_weight,
        shuffle=shuffle,
        validation_split=validation_split,
        validation_data=validation_data,
        validation_batch_size=validation_batch_size,
        validation_steps=validation_steps,
        steps_per_epoch=steps_per_epoch,
        seed=seed,
        shard_policy=shard_policy,
        grad_accum_steps=grad_accum_steps,
    )
    trainer = trainer_for(model, distribution, loop)
    callbacks = [*check_callbacks(callbacks), *_source_hooks(inputs)]
    with (
        stops_in_one_line(),
        data_errors(model, distribution, x, y, validation_data=validation_data),
    ):
        return trainer.fit(
            inputs.train_fn,
            epochs=epochs,
            global_batch_size=inputs.global_batch_size,
            plan=inputs.plan,
            validation_fn=inputs.validation,
            callbacks=callbacks,
            verbose=check_verbose(verbose) if distribution.role.is_chief else 0,
            validation_freq=validation_freq,
            initial_epoch=initial_epoch,
        )


@contextlib.contextmanager
def stops_in_one_line() -> Iterator[None]:
    """A fit stopped by SIGTERM or Ctrl-C says so in one line; `Preempted` (a SystemExit)
    then ends the script with 128 + the signal and no traceback, unless it is caught."""
    try:
        yield
    except Preempted as stop:
        print(f"tfdist.fit: {stop}", file=sys.stderr, flush=True)
        raise


def _steps_per_execution(model: keras.Model) -> int:
    """Keras' `compile(steps_per_execution=)`: steps per compiled call, batch hooks' pace."""
    return check_count("steps_per_execution", getattr(model, "steps_per_execution", 1) or 1)


class _SourceEpochs(keras.callbacks.Callback):
    """A PyDataset's own `on_epoch_begin`/`on_epoch_end`, called as Keras' fit calls them,
    and its readers stopped when the fit ends."""

    def __init__(self, source: GlobalBatches):
        super().__init__()
        self._source = source

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._source.on_epoch_begin()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._source.on_epoch_end()

    def on_train_end(self, logs: dict | None = None) -> None:
        self._source.close()


def _source_hooks(inputs: FitInputs) -> list[keras.callbacks.Callback]:
    return [] if inputs.source is None else [_SourceEpochs(inputs.source)]


def evaluate(
    model: keras.Model,
    x: Any = None,
    y: Any = None,
    batch_size: int | None = None,
    verbose: int | str = "auto",
    sample_weight: Any = None,
    steps: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    return_dict: bool = False,
    *,
    distribution: Distribution | None = None,
) -> Any:
    """Evaluates a compiled model as `model.evaluate` would, every example exactly once.

    Keras' batches of `x` are shared among the replicas (each worker reads every batch
    and keeps its replicas' rows, so each example counts once), with Keras' test hooks
    per compiled call of `steps_per_execution` batches. Under `parameter_server` the
    coordinator evaluates the whole data itself.

    Returns:
      The loss and metrics: a dict with `return_dict`, else a list (a scalar when
      there is only the loss), in `model.metrics_names` order.
    """
    check_compiled(model, "evaluate")
    distribution = _distribution(model, distribution)
    dataset_fn, known, batches = inference_inputs(
        x, y, sample_weight=sample_weight, batch_size=batch_size, steps=steps, name="evaluate"
    )
    try:
        with data_errors(model, distribution, x, y):
            logs = _cached_or_new(model, distribution).evaluate(
                dataset_fn,
                steps=known,
                callbacks=check_callbacks(callbacks),
                verbose=check_verbose(verbose) if distribution.role.is_chief else 0,
                steps_per_execution=_steps_per_execution(model),
            )
    finally:
        batches.close()
    if return_dict:
        return logs
    return model._flatten_metrics_in_order(logs)


def predict(
    model: keras.Model,
    x: Any,
    batch_size: int | None = None,
    verbose: int | str = "auto",
    steps: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    *,
    distribution: Distribution | None = None,
) -> Any:
    """Predicts as `model.predict` would: NumPy outputs in the order of `x`.

    Keras' batches of `x` are shared among the replicas and their outputs gathered back in
    order on every worker; Keras' predict hooks run per `steps_per_execution` batches.
    Under `parameter_server` the coordinator predicts itself.
    """
    if not isinstance(model, keras.Model):
        raise ConfigError(f"tfdist.predict takes a keras.Model, got {type(model).__name__}.")
    distribution = _distribution(model, distribution)
    dataset_fn, known, batches = inference_inputs(
        x, batch_size=batch_size, steps=steps, name="predict"
    )
    build_model_variables(model, distribution, input_spec(dataset_fn))
    shown = check_verbose(verbose) if distribution.role.is_chief else 0
    hooks = callback_list(
        check_callbacks(callbacks),
        model=model,
        history=None,
        is_chief=distribution.role.is_chief,
        verbose=shown,
        epochs=1,
        steps=known,
    )
    try:
        with data_errors(model, distribution, x, targets=False):
            return predict_batches(
                model,
                distribution,
                dataset_fn,
                steps=known,
                steps_per_execution=_steps_per_execution(model),
                callbacks=hooks,
            )
    finally:
        batches.close()
