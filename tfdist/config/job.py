"""The built-in job's settings, nested by concern as Model Garden's `ExperimentConfig`.

Owns `JobConfig`, what one run of `python -m tfdist.train` needs, and its sections:
`LaunchConfig` (the strategy and the cluster), `DataConfig` (the dataset and how workers
split it), `ModelConfig` (the network, its optimizer and precision), the `LoopConfig` of
`tfdist.config.loop` (shared with `tfdist.fit`) and `OutputConfig` (what the chief reports).
Field names equal the command line's flags, section by section. Each rule lives next to the
fields it reads: a section checks its own fields when built, `JobConfig` the rules across
sections (the global batch against `min_workers`, profiling against `model_dir`, the loop
against the strategy through `check_loop_fits`). Standard library only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from tfdist.config.checks import (
    FILE_DATASETS,
    OPTIMIZERS,
    PRECISIONS,
    SHARD_POLICIES,
    STRATEGIES,
    ConfigError,
    check_choice,
    check_image_shape,
    check_image_size,
    check_positive,
    check_profile_steps,
    nearest_multiples,
)
from tfdist.config.loop import LoopConfig, check_count, check_loop_fits


class Cluster(Protocol):
    """What the settings read of a parsed TF_CONFIG (`launch.tf_config.ClusterConfig`)."""

    @property
    def jobs(self) -> Mapping[str, Sequence[str]]: ...

    @property
    def has_ps(self) -> bool: ...

    @property
    def num_workers(self) -> int: ...

    @property
    def num_ps(self) -> int: ...


_FILES_EXAMPLES = {
    "tfrecord": "'data/train-*.tfrecord'",
    "csv": "'data/train-*.csv'",
    "npz": "data/train.npz",
    "image_folder": "photos/train (one folder per class)",
}


@dataclasses.dataclass(frozen=True)
class LaunchConfig:
    """The strategy and the cluster a job runs in.

    Attributes:
      strategy: one of STRATEGIES; `auto` decides from TF_CONFIG and the devices.
      num_workers: worker processes; above 1 without TF_CONFIG the CLI launches them. None:
        TF_CONFIG's workers when it is set (a given value must agree with it), else 1.
      num_ps: parameter-server processes (`parameter_server` only); at least 1 for a
        cluster the CLI launches. None: TF_CONFIG's ps tasks when it is set, else 0.
      num_devices: replicas for `mirrored`: GPUs when present, else logical CPUs.
        None means all GPUs, or 2 CPU replicas when there is no GPU.
      gpus_per_worker: GPUs the local launcher gives each worker process (through
        CUDA_VISIBLE_DEVICES); 0 leaves every worker all the GPUs it sees.
      ps_shards: `parameter_server`: parts each embedding table is split into across
        the ps tasks; None means one per ps task.
      isolate_network: run a locally launched cluster in a private network namespace.
      max_restarts: a locally launched cluster is started again this many times at most
        (a parameter_server worker is restarted in place).
      min_workers: `multi_worker`, a locally launched cluster: when a worker's restarts
        are spent, go on without it while at least this many workers remain (same
        global batch, from the last checkpoint); None ends the job then.
    """

    strategy: str = "auto"
    num_workers: int | None = None
    num_ps: int | None = None
    num_devices: int | None = None
    gpus_per_worker: int = 0
    ps_shards: int | None = None
    isolate_network: bool = True
    max_restarts: int = 0
    min_workers: int | None = None

    def __post_init__(self) -> None:
        check_choice("strategy", self.strategy, STRATEGIES)
        check_positive("num_workers", self.num_workers, allow_none=True)
        check_positive("num_devices", self.num_devices, allow_none=True)
        check_positive("ps_shards", self.ps_shards, allow_none=True)
        if self.max_restarts < 0:
            raise ConfigError(f"max_restarts ({self.max_restarts}) must be 0 or more.")
        if self.num_ps is not None and self.num_ps < 0:
            raise ConfigError(f"num_ps ({self.num_ps}) must be 0 or more.")
        if self.num_ps and self.strategy not in ("parameter_server", "auto"):
            raise ConfigError(
                f"num_ps ({self.num_ps}) is only used by strategy 'parameter_server', "
                f"not {self.strategy!r}; drop --num_ps or pass --strategy=parameter_server."
            )
        if (
            isinstance(self.gpus_per_worker, bool)
            or not isinstance(self.gpus_per_worker, int)
            or self.gpus_per_worker < 0
        ):
            raise ConfigError(
                f"gpus_per_worker ({self.gpus_per_worker!r}) must be an integer of at least 0; "
                "pass --gpus_per_worker=1 for one GPU per worker process."
            )
        if self.gpus_per_worker and self.strategy in ("one_device", "mirrored"):
            raise ConfigError(
                f"gpus_per_worker ({self.gpus_per_worker}) is for worker processes, not strategy "
                f"{self.strategy!r}; use --num_devices for mirrored, or pass "
                "--strategy=multi_worker or --strategy=parameter_server."
            )
        if (self.num_workers or 1) > 1 and self.strategy in ("one_device", "mirrored"):
            raise ConfigError(
                f"num_workers ({self.num_workers}) needs a multi-process strategy, not "
                f"{self.strategy!r}; pass --strategy=multi_worker or --strategy=parameter_server."
            )
        self._check_min_workers()

    def _check_min_workers(self) -> None:
        """`min_workers` fits the launch: multi_worker and at most num_workers."""
        min_workers = check_positive("min_workers", self.min_workers, allow_none=True)
        if min_workers is None:
            return
        if self.launch_strategy() != "multi_worker" or self.strategy in ("one_device", "mirrored"):
            raise ConfigError(
                f"min_workers ({self.min_workers}) is for strategy 'multi_worker', not "
                f"{self.strategy!r}"
                + (
                    ": a parameter_server worker is restarted in place while the others go on"
                    if self.launch_strategy() == "parameter_server"
                    else ""
                )
                + "; drop min_workers."
            )
        workers = self.num_workers or 1
        if min_workers > workers:
            raise ConfigError(
                f"min_workers ({self.min_workers}) must be at most num_workers ({workers}); "
                f"pass min_workers={workers} or fewer."
            )

    def launch_strategy(self) -> str:
        """The cluster layout a local launch needs: multi_worker or parameter_server."""
        if self.strategy == "parameter_server" or (self.strategy == "auto" and self.num_ps):
            return "parameter_server"
        return "multi_worker"

    def expected_strategy(self) -> str:
        """The strategy as far as the settings tell, before TF_CONFIG and the devices do."""
        if self.strategy == "auto" and self.num_ps:
            return "parameter_server"
        return self.strategy

    def replica_counts(self) -> list[int]:
        """The replicas of every cluster size this launch may run with (min_workers..)."""
        workers = self.num_workers or 1
        per_worker = max(1, self.gpus_per_worker)
        return [n * per_worker for n in range(self.min_workers or workers, workers + 1)]

    def needs_local_cluster(self, cluster: Cluster | None) -> bool:
        """True when the CLI must start the processes itself (no TF_CONFIG, several tasks).

        `cluster` is the parsed TF_CONFIG (a `launch.tf_config.ClusterConfig`) or None.
        """
        if cluster is not None:
            return False
        return (self.num_workers or 1) > 1 or self.launch_strategy() == "parameter_server"

    def check_cluster(self, cluster: Cluster | None) -> None:
        """Checks these settings against the cluster (the parsed TF_CONFIG, or None).

        With TF_CONFIG the cluster's shape comes from it: `strategy` must fit its layout
        (`parameter_server` needs ps tasks, `multi_worker` has none) and `num_workers`
        and `num_ps`, when given, must agree with it. Without TF_CONFIG a cluster the CLI
        launches for `parameter_server` needs `num_ps` of at least 1.

        Args:
          cluster: a `launch.tf_config.ClusterConfig` (`read_tf_config()`), or None.

        Raises:
          ConfigError: one line naming both values and the fix.
        """
        if cluster is None:
            if (
                self.needs_local_cluster(None)
                and self.launch_strategy() == "parameter_server"
                and not self.num_ps
            ):
                raise ConfigError(
                    f"num_ps ({self.num_ps or 0}) must be at least 1 for strategy "
                    "'parameter_server' when tfdist launches the cluster itself (no TF_CONFIG); "
                    "pass num_ps=1, or set TF_CONFIG for a cluster you started."
                )
            return
        jobs = ", ".join(cluster.jobs)
        if self.min_workers is not None:
            raise ConfigError(
                f"min_workers ({self.min_workers}) resizes a cluster tfdist launches itself, "
                "not one given by TF_CONFIG (its engine, e.g. Slurm or Kubernetes, restarts "
                "or resizes it); drop min_workers or unset TF_CONFIG."
            )
        if self.strategy == "multi_worker" and cluster.has_ps:
            raise ConfigError(
                f"strategy 'multi_worker' cannot run in the TF_CONFIG cluster ({jobs}), which "
                "has 'ps' tasks; pass strategy='parameter_server' or drop the ps job from "
                "TF_CONFIG."
            )
        if self.strategy == "parameter_server" and not cluster.has_ps:
            raise ConfigError(
                f"strategy 'parameter_server' needs 'chief' and 'ps' tasks, but the TF_CONFIG "
                f"cluster has only: {jobs}; add them to TF_CONFIG or pass "
                "strategy='multi_worker'."
            )
        for name, given, actual, what in (
            ("num_workers", self.num_workers, cluster.num_workers, "worker(s)"),
            ("num_ps", self.num_ps, cluster.num_ps, "ps task(s)"),
        ):
            if given is not None and given != actual:
                raise ConfigError(
                    f"{name} ({given}) does not agree with TF_CONFIG, whose cluster has "
                    f"{actual} {what}; pass {name}={actual} or leave {name} unset (TF_CONFIG "
                    "decides)."
                )


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The dataset and how the workers split it.

    Attributes:
      dataset: `digits`, `synthetic`, `interactions`, a file dataset (`FILE_DATASETS`), a
        TFDS name, or the user's own source function as `package.module:function`.
      data_dir: where TFDS datasets are prepared (TFDS's default when None).
      num_examples: size of the `synthetic` dataset.
      train_files, validation_files: comma-separated globs of the files of a file dataset
        (`FILE_DATASETS`); for `image_folder`, a folder with one sub-folder per class.
      label_key: the TFRecord feature, CSV column or npz array holding the label.
      id_key: the feature, column or array holding each example's id (hashed by the
        `hash` shard policy); None keys examples by file and record number.
      feature_spec: TFRecord features as `NAME:DTYPE[:SHAPE],...` (e.g.
        `pixels:float32:8x8,label:int64`); None infers them from the first record.
      num_classes: label classes; None counts them from the labels.
      image_size: `(height, width)` `image_folder` images are resized to; None keeps
        the size of the first image.
      image_shape: `(height, width, channels)`: `synthetic` examples are images of
        this shape (the compute-heavy reference job, with `cnn`); None: 784 features.
      shard_policy: one of SHARD_POLICIES: how workers split the training data.
      data_service: read training data through a tf.data service (`distributed_epoch`);
        a local launch starts its dispatcher and `data_service_workers` data workers.
      data_service_address: the dispatcher (`grpc://HOST:PORT`) of a running service;
        implies `data_service`.
      data_service_workers: data workers a local launch starts.
      shuffle: shuffle the training data each epoch (False keeps the source order).
    """

    dataset: str = "digits"
    data_dir: str | None = None
    num_examples: int = 60000
    train_files: str | None = None
    validation_files: str | None = None
    label_key: str = "label"
    id_key: str | None = None
    feature_spec: str | None = None
    num_classes: int | None = None
    image_size: tuple[int, int] | None = None
    image_shape: tuple[int, int, int] | None = None
    shard_policy: str = "auto"
    data_service: bool = False
    data_service_address: str | None = None
    data_service_workers: int = 1
    shuffle: bool = True

    def __post_init__(self) -> None:
        check_positive("num_examples", self.num_examples)
        check_choice("shard_policy", self.shard_policy, SHARD_POLICIES)
        check_positive("num_classes", self.num_classes, allow_none=True)
        check_positive("data_service_workers", self.data_service_workers)
        check_image_size(self.image_size)
        if check_image_shape(self.image_shape) and self.dataset != "synthetic":
            raise ConfigError(
                f"image_shape ({self.image_shape!r}) shapes the generated --dataset=synthetic "
                f"examples, not {self.dataset!r}; drop --image_shape (image_folder images are "
                "resized with --image_size)."
            )
        if self.dataset in FILE_DATASETS and not self.train_files:
            example = _FILES_EXAMPLES[self.dataset]
            raise ConfigError(
                f"dataset {self.dataset!r} reads files: pass --train_files, e.g. "
                f"--train_files={example}."
            )
        if self.uses_data_service and self.shard_policy not in ("auto", "off"):
            raise ConfigError(
                f"shard_policy ({self.shard_policy!r}) does not apply with data_service: the "
                "tf.data service splits the data between the workers itself "
                "(distributed_epoch); drop --shard_policy."
            )

    @property
    def uses_data_service(self) -> bool:
        return self.data_service or bool(self.data_service_address)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network the job builds and how it is compiled.

    Attributes:
      model: a registered model name (`mlp`, `cnn`, `recommender`, or one a user
        registered) or a builder as `package.module:function`.
      optimizer: one of OPTIMIZERS.
      learning_rate: the optimizer's learning rate.
      mixed_precision: `none`, `mixed_float16` (with loss scaling) or `mixed_bfloat16`.
      jit_compile: compile each step with XLA (Keras' `compile(jit_compile=True)`).
    """

    model: str = "mlp"
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    mixed_precision: str = "none"
    jit_compile: bool = False

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_positive("learning_rate", self.learning_rate)
        check_choice("mixed_precision", self.mixed_precision, PRECISIONS)
        if not isinstance(self.jit_compile, bool):
            raise ConfigError(f"jit_compile ({self.jit_compile!r}) must be True or False.")


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    """What the job reports beyond its progress line.

    Attributes:
      metrics_json: path of a JSON summary written by the chief; None writes none.
      profile_steps: `(first, last)` optimizer steps the chief traces with the
        TensorFlow profiler into MODEL_DIR/tensorboard/train; needs `model_dir`.
      verbose: every worker prints its progress, not only the chief.
    """

    metrics_json: str | None = None
    profile_steps: tuple[int, int] | None = None
    verbose: bool = False

    def __post_init__(self) -> None:
        check_profile_steps(self.profile_steps)


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """Everything one run of the built-in job needs, section by section.

    Attributes:
      launch: the strategy and the cluster.
      data: the dataset and its split between workers.
      model: the network, its optimizer and precision.
      loop: the training loop, communication, local SGD and checkpoints (as `tfdist.fit`).
      output: the metrics JSON, profiling and which tasks print.
      global_batch_size: examples per update over all replicas (per worker step under
        parameter_server).
      epochs: epochs to train.
      steps_per_epoch: None means one pass over the training split.
      seed: seeds weights, shuffling and synthetic data.
    """

    launch: LaunchConfig = LaunchConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loop: LoopConfig = LoopConfig()
    output: OutputConfig = OutputConfig()
    global_batch_size: int = 64
    epochs: int = 20
    steps_per_epoch: int | None = None
    seed: int = 0

    @classmethod
    def from_flat(cls, **values: object) -> JobConfig:
        """The config whose leaf fields, found by name in any section, take `values`.

        Leaf names are unique across sections and equal the command line's flags, so
        `JobConfig.from_flat(strategy="mirrored", model_dir="/tmp/run")` is what
        `--strategy=mirrored --model_dir=/tmp/run` gives.
        """
        unknown = set(values) - set(leaf_names(cls))
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {sorted(unknown)}; expected field names of JobConfig's "
                f"sections, e.g. {', '.join(leaf_names(cls)[:4])}."
            )
        built: JobConfig = _nested(cls, values)
        return built

    def flat(self) -> dict[str, object]:
        """Every leaf field by name (the inverse of `from_flat`)."""
        return _flat(self)

    def __post_init__(self) -> None:
        check_count("global_batch_size", self.global_batch_size)
        check_count("epochs", self.epochs)
        if self.steps_per_epoch is not None:
            check_count("steps_per_epoch", self.steps_per_epoch)
        self._check_batch_for_every_cluster_size()
        if self.output.profile_steps and not self.loop.checkpoint.model_dir:
            raise ConfigError(
                f"profile_steps ({self.output.profile_steps!r}) needs model_dir: the trace is "
                "written under MODEL_DIR/tensorboard/train; pass model_dir=DIR."
            )
        check_loop_fits(
            self.loop,
            strategy=self.launch.expected_strategy(),
            loss_scaled=self.model.mixed_precision == "mixed_float16",
        )
        if self.model.jit_compile and self.launch.expected_strategy() == "parameter_server":
            raise ConfigError(
                "jit_compile (True) compiles a step with XLA, which cannot compile the reads "
                "of variables on a ps: drop it under strategy='parameter_server'."
            )

    def _check_batch_for_every_cluster_size(self) -> None:
        """A smaller cluster keeps the global batch, so every size's replicas must divide it."""
        launch = self.launch
        if launch.min_workers is None:
            return
        counts = launch.replica_counts()
        bad = [n for n in counts if self.global_batch_size % n]
        if bad:
            every = math.lcm(*counts)
            raise ConfigError(
                f"global_batch_size ({self.global_batch_size}) must be divisible by the number "
                f"of replicas of every cluster size from min_workers ({launch.min_workers}) to "
                f"num_workers ({launch.num_workers or 1}), since a smaller cluster keeps the "
                f"global batch, but not by {bad[0]}; use "
                f"{nearest_multiples(self.global_batch_size, every)}."
            )


def _is_section(field: dataclasses.Field[Any]) -> bool:
    return dataclasses.is_dataclass(field.default)


def leaf_names(cls: type = JobConfig) -> list[str]:
    """The names of every leaf field of `cls`'s config tree, section by section."""
    names: list[str] = []
    for field in dataclasses.fields(cls):
        names.extend(leaf_names(type(field.default)) if _is_section(field) else [field.name])
    return names


def _nested(cls: type, values: dict[str, object]) -> Any:
    kwargs = {}
    for field in dataclasses.fields(cls):
        if _is_section(field):
            kwargs[field.name] = _nested(type(field.default), values)
        elif field.name in values:
            kwargs[field.name] = values[field.name]
    return cls(**kwargs)


def _flat(config: Any) -> dict[str, object]:
    values: dict[str, object] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        values.update(_flat(value) if _is_section(field) else {field.name: value})
    return values
