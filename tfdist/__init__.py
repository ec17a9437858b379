"""tfdist: train Keras 3 models under MirroredStrategy, MultiWorkerMirroredStrategy and
ParameterServerStrategy with one custom training loop.

The Python API is Keras' (imported lazily, so `import tfdist` starts no TensorFlow):

    dist = tfdist.make_strategy("auto")        # multi_worker / parameter_server from TF_CONFIG
    with dist.scope():
        model = keras.Sequential([...])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    history = tfdist.fit(model, x, y, batch_size=64, epochs=5, validation_split=0.1)
    tfdist.evaluate(model, x_test, y_test, return_dict=True)

`tfdist.Trainer` (dataset functions and a `LoopConfig`) is the lower-level API below it.
"""

import importlib

_EXPORTS = {
    "ConfigError": "tfdist.config",
    "JobConfig": "tfdist.config",
    "LoopConfig": "tfdist.config",
    "CheckpointConfig": "tfdist.config",
    "CommunicationConfig": "tfdist.config",
    "LocalSGDConfig": "tfdist.config",
    "read_tf_config": "tfdist.distribute.cluster",
    "parse_tf_config": "tfdist.distribute.cluster",
    "make_strategy": "tfdist.distribute.strategies",
    "configure_cpu_devices": "tfdist.distribute.strategies",
    "Distribution": "tfdist.distribute.strategies",
    "launch": "tfdist.distribute.launcher",
    "LaunchFailed": "tfdist.distribute.launcher",
    "build_model": "tfdist.models",
    "register_model": "tfdist.models",
    "build_optimizer": "tfdist.optimizers",
    "load_source": "tfdist.data.pipeline",
    "make_dataset_fn": "tfdist.data.pipeline",
    "fit": "tfdist.training.keras_fit",
    "evaluate": "tfdist.training.keras_fit",
    "predict": "tfdist.training.keras_fit",
    "Trainer": "tfdist.training.trainer",
    "History": "tfdist.training.history",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tfdist' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
