"""The built-in job: one `TrainConfig` run end to end in this process.

Owns the wiring from a frozen config to library calls (strategy, data, model,
trainer) and the run's summary (the `--metrics_json` file). It reads no
flags and starts no processes: the CLI decides whether to launch a cluster and
calls `run_job` in each trainer process.
"""

from __future__ import annotations

import json
import os
import time

import keras

from launch.tf_config import ClusterConfig
from tfdist.config import TrainConfig
from tfdist.data.pipeline import input_errors, load_source, make_dataset_fn, steps_per_epoch
from tfdist.data.service import service_target
from tfdist.distribute.strategies import make_strategy
from tfdist.layers import sharded_embeddings
from tfdist.models import build_model
from tfdist.precision import set_precision
from tfdist.training.history import History
from tfdist.training.progress import ProgressBar
from tfdist.training.startup import FirstStepTimer, task_startup_seconds
from tfdist.training.summaries import Summaries, tensorboard_dir
from tfdist.training.trainer import Trainer


def summarize(config: TrainConfig, distribution, history: History, wall_seconds: float) -> dict:
    """The run's summary, as written to `--metrics_json`."""
    last = history.epochs[-1] if history.epochs else None
    replicas = distribution.num_replicas * (
        distribution.num_workers if distribution.is_async else 1
    )
    return {
        "strategy": distribution.kind,
        "num_replicas": replicas,
        "num_workers": distribution.num_workers,
        "model": config.model if isinstance(config.model, str) else "custom",
        "dataset": config.dataset,
        "global_batch_size": config.global_batch_size,
        "grad_accum_steps": config.grad_accum_steps,
        "grad_compression": config.grad_compression,
        "mixed_precision": config.mixed_precision,
        "sync_every": config.sync_every,
        "outer_optimizer": config.outer_optimizer,
        "epochs": len(history.epochs),
        "steps": history.final_step,
        "steps_by_worker": history.steps_by_worker,
        "train_loss": last.train_loss if last else None,
        "train_accuracy": last.train_accuracy if last else None,
        "val_loss": last.val_loss if last else None,
        "val_accuracy": last.val_accuracy if last else None,
        "examples_per_sec": history.examples_per_sec(),
        "wall_seconds": wall_seconds,
        "restored_from": history.restored_from,
        "history": history.as_dicts(),
    }


def write_metrics_json(path: str, summary: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        json.dump(summary, f, indent=2)


def build_callbacks(config: TrainConfig, distribution) -> list:
    """The job's callbacks for this task.

    The chief shows progress and, with `model_dir`, writes TensorBoard summaries;
    other workers show progress only with `verbose`.
    """
    is_chief = distribution.role.is_chief
    callbacks = [ProgressBar()] if is_chief or config.verbose else []
    if is_chief and config.model_dir:
        callbacks.append(
            Summaries(tensorboard_dir(config.model_dir), profile_steps=config.profile_steps)
        )
    return callbacks


def source_from_config(config: TrainConfig):
    """The source `config` names, with its file options."""
    return load_source(
        config.dataset,
        data_dir=config.data_dir,
        num_examples=config.num_examples,
        seed=config.seed,
        train_files=config.train_files,
        validation_files=config.validation_files,
        label_key=config.label_key,
        id_key=config.id_key,
        feature_spec=config.feature_spec,
        num_classes=config.num_classes,
        image_size=config.image_size,
        image_shape=config.image_shape,
    )


def run_job(
    config: TrainConfig, *, cluster: ClusterConfig | None = None, started_at: float | None = None
) -> dict:
    """Trains `config.model` on `config.dataset` under `config.strategy`; returns the summary.

    Args:
      config: the run's settings.
      cluster: the parsed TF_CONFIG of this process, or None for a single process.
      started_at: `time.time()` when the process started, for `wall_seconds`.
    """
    started_at = time.time() if started_at is None else started_at
    communication = config.communication()
    distribution = make_strategy(
        config.strategy,
        num_devices=config.num_devices,
        cluster=cluster,
        communication=communication,
        ps_shards=config.ps_shards,
    )
    keras.utils.set_random_seed(config.seed)
    set_precision(config.mixed_precision)
    source = source_from_config(config)
    steps = config.steps_per_epoch or steps_per_epoch(source, config.global_batch_size)
    first_step = FirstStepTimer(started_at)
    with distribution.strategy.scope():
        model = build_model(
            config.model,
            input_shape=source.input_shape,
            num_classes=source.num_classes,
            vocab_sizes=source.vocab_sizes,
        )
    trainer = Trainer(
        distribution,
        model=model,
        optimizer=config.optimizer,
        learning_rate=config.learning_rate,
        global_batch_size=config.global_batch_size,
        steps_per_loop=config.steps_per_loop,
        grad_accum_steps=config.grad_accum_steps,
        communication=communication,
        callbacks=[*build_callbacks(config, distribution), first_step],
        sync_every=config.sync_every,
        outer_optimizer=config.outer_optimizer,
        outer_learning_rate=config.outer_learning_rate,
        outer_momentum=config.outer_momentum,
    )
    service = local_service = None
    if config.uses_data_service:
        service, local_service = service_target(
            address=config.data_service_address,
            local_workers=config.data_service_workers,
            cluster=cluster,
        )
    train_fn = make_dataset_fn(
        source,
        "train",
        global_batch_size=config.global_batch_size,
        training=True,
        seed=config.seed,
        shuffle=config.shuffle,
        shard_policy=config.shard_policy,
        data_service=service,
        steps_per_epoch=steps * config.grad_accum_steps,
    )
    validation_fn = None
    if source.num_validation:
        validation_fn = make_dataset_fn(
            source, "validation", global_batch_size=config.global_batch_size, training=False
        )
    try:
        with input_errors(source):
            history = trainer.fit(
                train_fn,
                epochs=config.epochs,
                steps_per_epoch=steps,
                validation_fn=validation_fn,
                model_dir=config.model_dir,
                checkpoint_every_steps=config.checkpoint_every_steps,
                keep_checkpoints=config.keep_checkpoints,
            )
    finally:
        if local_service is not None:
            local_service.stop()
    summary = summarize(config, distribution, history, time.time() - started_at)
    summary["allreduce_bytes_per_step"] = trainer.allreduce_bytes_per_step
    # Process start to the end of the first loop call; every task's under multi_worker.
    summary["startup_seconds"] = first_step.seconds
    summary["first_step_unix_time"] = first_step.finished_at
    summary["task_startup_seconds"] = task_startup_seconds(distribution, first_step.seconds)
    summary["data_service"] = service.address if service else None
    summary["tables"] = {layer.name: layer.placement() for layer in sharded_embeddings(model)}
    if distribution.role.is_chief and config.metrics_json:
        write_metrics_json(config.metrics_json, summary)
    return summary
