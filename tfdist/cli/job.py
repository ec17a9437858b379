"""The built-in job: one `JobConfig` run end to end in this process, through the Trainer.

Owns the wiring from a frozen config to library calls: the strategy, the source, the
registry's model compiled as a Keras user would compile it (the optimizer, the model's
own loss or sparse cross-entropy from logits, and accuracy), the same `Trainer` that
`tfdist.fit` uses, and the run's summary (`--metrics_json`, written by the `MetricsJson`
callback). It reads no flags and starts no processes: the CLI decides whether to launch
a cluster and calls `run_job` in each trainer process.
"""

from __future__ import annotations

import json
import os
import sys
import time

import keras

from launch.tf_config import ClusterConfig
from tfdist.config import JobConfig
from tfdist.data.pipeline import input_errors, load_source, make_dataset_fn, steps_per_epoch
from tfdist.data.service import service_target
from tfdist.distribute.strategies import Distribution, make_strategy
from tfdist.layers import sharded_embeddings
from tfdist.models import build_model
from tfdist.optimizers import build_optimizer
from tfdist.precision import set_precision
from tfdist.training.data_errors import data_errors
from tfdist.training.history import History
from tfdist.training.startup import FirstStepTimer, task_startup_seconds
from tfdist.training.trainer import Trainer

TENSORBOARD_DIR = "tensorboard"


def _epoch_records(history: History) -> list[dict]:
    """One dict per epoch: its logs under the summary's names and its timing."""
    records = []
    for index, timing in enumerate(history.timings):
        logs = {key: values[index] for key, values in history.history.items()}
        val = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        records.append(
            {
                "epoch": timing.epoch,
                "steps": timing.steps,
                "train_loss": train.pop("loss", None),
                "train_accuracy": train.pop("accuracy", None),
                "val_loss": val.pop("loss", None),
                "val_accuracy": val.pop("accuracy", None),
                "train_seconds": timing.seconds,
                "examples": timing.examples,
                "global_step": timing.global_step,
                "wall_seconds": timing.wall_seconds,
                "learning_rate": timing.learning_rate,
                "metrics": train,
                "val_metrics": val,
            }
        )
    return records


def summarize(
    config: JobConfig, distribution: Distribution, history: History, wall_seconds: float
) -> dict:
    """The run's summary, as written to `--metrics_json`."""
    replicas = distribution.num_replicas * (
        distribution.num_workers if distribution.is_async else 1
    )
    loop = config.loop
    return {
        "strategy": distribution.kind,
        "num_replicas": replicas,
        "num_workers": distribution.num_workers,
        "model": config.model.model if isinstance(config.model.model, str) else "custom",
        "dataset": config.data.dataset,
        "global_batch_size": config.global_batch_size,
        "grad_accum_steps": loop.grad_accum_steps,
        "grad_compression": loop.communication.grad_compression,
        "mixed_precision": config.model.mixed_precision,
        "jit_compile": config.model.jit_compile,
        "sync_every": loop.local_sgd.sync_every,
        "outer_optimizer": loop.local_sgd.outer_optimizer,
        "epochs": len(history.epoch),
        "steps": history.final_step,
        "steps_by_worker": history.steps_by_worker,
        "ps_updates": history.ps_updates,
        "train_loss": history.last("loss"),
        "train_accuracy": history.last("accuracy"),
        "val_loss": history.last("val_loss"),
        "val_accuracy": history.last("val_accuracy"),
        "examples_per_sec": history.examples_per_sec(),
        "wall_seconds": wall_seconds,
        "restored_from": history.restored_from,
        "history": _epoch_records(history),
    }


def write_metrics_json(path: str, summary: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        json.dump(summary, f, indent=2)


class MetricsJson(keras.callbacks.Callback):
    """Builds the run's summary when training ends; the chief writes it to `path`.

    Every task builds it (under multi_worker the tasks' start-up times are gathered with
    a collective); `summary` holds it afterwards.

    Args:
      path: the `--metrics_json` file, or None to write nothing.
      build: `build()` returns the summary.
      is_chief: this task writes the file.
    """

    def __init__(self, path: str | None, build, *, is_chief: bool):
        super().__init__()
        self.path, self._build, self._is_chief = path, build, is_chief
        self.summary: dict = {}

    def on_train_end(self, logs=None):
        self.summary = self._build()
        if self._is_chief and self.path:
            write_metrics_json(self.path, self.summary)


def source_from_config(config: JobConfig):
    """The source `config.data` names, with its file options."""
    data = config.data
    return load_source(
        data.dataset,
        data_dir=data.data_dir,
        num_examples=data.num_examples,
        seed=config.seed,
        train_files=data.train_files,
        validation_files=data.validation_files,
        label_key=data.label_key,
        id_key=data.id_key,
        feature_spec=data.feature_spec,
        num_classes=data.num_classes,
        image_size=data.image_size,
        image_shape=data.image_shape,
    )


def compile_model(model: keras.Model, config: JobConfig) -> keras.Model:
    """Compiles the job's model as a Keras user would: the optimizer, its loss, accuracy.

    The loss is the model's own when its builder compiled it with one, else sparse
    categorical cross-entropy from logits (the built-in models output logits).
    """
    own_loss = getattr(model, "loss", None) if getattr(model, "compiled", False) else None
    model.compile(
        optimizer=build_optimizer(config.model.optimizer, learning_rate=config.model.learning_rate),
        loss=own_loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=config.model.jit_compile,
    )
    return model


def progress_verbose(config: JobConfig, is_chief: bool) -> int:
    """Keras' `verbose` of this task: the chief (or every worker with `--verbose`) shows a
    bar on a terminal and a line per epoch elsewhere (logs, pipes); the others nothing."""
    if not (is_chief or config.output.verbose):
        return 0
    isatty = getattr(sys.stdout, "isatty", None)
    return 1 if isatty and isatty() else 2


def _callbacks(config: JobConfig, distribution: Distribution, first_step, metrics_json) -> list:
    callbacks = [first_step, metrics_json]
    model_dir = config.loop.checkpoint.model_dir
    if model_dir and distribution.role.is_chief:
        callbacks.append(
            keras.callbacks.TensorBoard(
                log_dir=os.path.join(model_dir, TENSORBOARD_DIR),
                profile_batch=profile_calls(
                    config.output.profile_steps, config.loop.steps_per_loop
                ),
            )
        )
    return callbacks


def profile_calls(steps: tuple[int, int] | None, steps_per_loop: int):
    """`--profile_steps` (optimizer steps) as the compiled calls Keras' TensorBoard counts
    (`profile_batch`, 1-based): every call that runs one of those steps; 0 for none."""
    if not steps:
        return 0
    first, last = steps
    return ((first - 1) // steps_per_loop + 1, (last - 1) // steps_per_loop + 1)


def run_job(
    config: JobConfig, *, cluster: ClusterConfig | None = None, started_at: float | None = None
) -> dict:
    """Trains `config`'s model on its dataset under its strategy; returns the summary.

    Args:
      config: the run's settings.
      cluster: the parsed TF_CONFIG of this process, or None for a single process.
      started_at: `time.time()` when the process started, for `wall_seconds`.
    """
    started_at = time.time() if started_at is None else started_at
    launch = config.launch
    distribution = make_strategy(
        launch.strategy,
        num_devices=launch.num_devices,
        cluster=cluster,
        communication=config.loop.communication,
        ps_shards=launch.ps_shards,
    )
    keras.utils.set_random_seed(config.seed)
    set_precision(config.model.mixed_precision)
    source = source_from_config(config)
    steps = config.steps_per_epoch or steps_per_epoch(source, config.global_batch_size)
    with distribution.scope():
        model = build_model(
            config.model.model,
            input_shape=source.input_shape,
            num_classes=source.num_classes,
            vocab_sizes=source.vocab_sizes,
        )
        compile_model(model, config)
    service = local_service = None
    if config.data.uses_data_service:
        service, local_service = service_target(
            address=config.data.data_service_address,
            local_workers=config.data.data_service_workers,
            cluster=cluster,
        )
    train_fn = make_dataset_fn(
        source,
        "train",
        global_batch_size=config.global_batch_size,
        training=True,
        seed=config.seed,
        shuffle=config.data.shuffle,
        shard_policy=config.data.shard_policy,
        data_service=service,
        steps_per_epoch=steps * config.loop.grad_accum_steps,
    )
    validation_fn = None
    if source.num_validation:
        validation_fn = make_dataset_fn(
            source, "validation", global_batch_size=config.global_batch_size, training=False
        )
    trainer = Trainer(distribution, model, config.loop)
    first_step = FirstStepTimer(started_at)
    is_chief = distribution.role.is_chief

    def summary() -> dict:
        built = summarize(config, distribution, model.history, time.time() - started_at)
        built["allreduce_bytes_per_step"] = trainer.allreduce_bytes_per_step
        # Process start to the end of the first loop call; every task's under multi_worker.
        built["startup_seconds"] = first_step.seconds
        built["first_step_unix_time"] = first_step.finished_at
        built["task_startup_seconds"] = task_startup_seconds(distribution, first_step.seconds)
        built["data_service"] = service.address if service else None
        built["tables"] = {layer.name: layer.placement() for layer in sharded_embeddings(model)}
        return built

    metrics_json = MetricsJson(config.output.metrics_json, summary, is_chief=is_chief)
    try:
        name = f"dataset={config.data.dataset!r}"
        with input_errors(source), data_errors(model, distribution, source, name=name):
            trainer.fit(
                train_fn,
                epochs=config.epochs,
                steps_per_epoch=steps,
                global_batch_size=config.global_batch_size,
                validation_fn=validation_fn,
                callbacks=_callbacks(config, distribution, first_step, metrics_json),
                verbose=progress_verbose(config, is_chief),
            )
    finally:
        if local_service is not None:
            local_service.stop()
    return metrics_json.summary
