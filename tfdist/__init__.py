"""tfdist: train Keras 3 models under MirroredStrategy, MultiWorkerMirroredStrategy and
ParameterServerStrategy with one custom training loop.

The Python API (imported lazily so ``tfdist.config`` and the launcher never start
TensorFlow)::

    dist = tfdist.make_strategy("mirrored", num_devices=2)
    with dist.strategy.scope():
        model = tfdist.build_model("mlp", input_shape=(8, 8), num_classes=10)
    trainer = tfdist.Trainer(dist, model=model, optimizer="adam", global_batch_size=64)
    history = trainer.fit(train_fn, epochs=5, steps_per_epoch=20, validation_fn=val_fn)
"""

import importlib

_EXPORTS = {
    "ConfigError": "tfdist.config",
    "TrainConfig": "tfdist.config",
    "read_tf_config": "tfdist.distribute.cluster",
    "parse_tf_config": "tfdist.distribute.cluster",
    "make_strategy": "tfdist.distribute.strategies",
    "configure_cpu_devices": "tfdist.distribute.strategies",
    "Distribution": "tfdist.distribute.strategies",
    "build_model": "tfdist.models",
    "register_model": "tfdist.models",
    "build_optimizer": "tfdist.optimizers",
    "load_source": "tfdist.data.pipeline",
    "make_dataset_fn": "tfdist.data.pipeline",
    "Trainer": "tfdist.training.trainer",
    "History": "tfdist.training.history",
    "Callback": "tfdist.training.callbacks",
    "ProgressBar": "tfdist.training.progress",
    "Summaries": "tfdist.training.summaries",
    "run_job": "tfdist.cli.job",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tfdist' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
