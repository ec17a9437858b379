"""Settings of a training run and of the cluster it runs in.

This module owns the vocabulary every other module shares: the valid strategy,
optimizer and model-independent option names, the frozen `TrainConfig` the
command line builds, and the checks of single values every boundary uses. It
is standard library only: it never imports TensorFlow, so the launcher and the
command line can use it before TensorFlow starts. Reading TF_CONFIG belongs to
`tfdist.distribute.cluster`.
"""

from __future__ import annotations

import dataclasses
import math

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "parameter_server")
OPTIMIZERS = ("sgd", "adam", "rmsprop")
COMPRESSIONS = ("none", "fp16", "bf16")
COLLECTIVE_IMPLEMENTATIONS = ("auto", "ring", "nccl")
PRECISIONS = ("none", "mixed_float16", "mixed_bfloat16")
SHARD_POLICIES = ("auto", "file", "data", "hash", "random", "off")
OUTER_OPTIMIZERS = ("none", "sgd", "nesterov")
FILE_DATASETS = ("tfrecord", "csv", "npz", "image_folder")
DEFAULT_CPU_REPLICAS = 2


class ConfigError(ValueError):
    """A user mistake in settings, TF_CONFIG or data; the message is one line with the fix."""


def describe_choices(values) -> str:
    return ", ".join(values)


def check_choice(what: str, value: str, choices) -> str:
    """Returns `value` if it is one of `choices`; raises ConfigError listing them otherwise."""
    if value not in choices:
        raise ConfigError(
            f"Unknown {what} {value!r}. Expected one of: {describe_choices(choices)}."
        )
    return value


def check_positive(what: str, value, *, allow_none: bool = False):
    """Returns `value` if it is a positive number (or None when allowed)."""
    if value is None and allow_none:
        return value
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value > 0
        or value == float("inf")
    ):  # `not > 0` also refuses NaN.
        raise ConfigError(f"{what} ({value!r}) must be a positive number.")
    return value


def nearest_multiples(value: int, divisor: int) -> str:
    """Says the multiples of `divisor` on either side of `value`: "28 or 32"."""
    below = (value // divisor) * divisor
    above = below + divisor
    return f"{below} or {above}" if below > 0 else f"{above}"


def per_replica_batch_size(global_batch_size: int, num_replicas: int) -> int:
    """The batch each replica computes on; the global batch must split evenly."""
    if global_batch_size % num_replicas:
        raise ConfigError(
            f"global_batch_size ({global_batch_size}) must be divisible by the number of "
            f"replicas ({num_replicas}); use {nearest_multiples(global_batch_size, num_replicas)}."
        )
    return global_batch_size // num_replicas


def check_profile_steps(steps) -> tuple[int, int] | None:
    """Returns `steps` as `(first, last)` optimizer steps to profile, or None."""
    if steps is None:
        return None
    if (
        not isinstance(steps, (tuple, list))
        or len(steps) != 2
        or any(isinstance(s, bool) or not isinstance(s, int) for s in steps)
        or not 1 <= steps[0] <= steps[1]
    ):
        raise ConfigError(
            f"profile_steps ({steps!r}) must be two optimizer steps FIRST,LAST with "
            "1 <= FIRST <= LAST, e.g. --profile_steps=10,20."
        )
    return tuple(steps)


def parse_profile_steps(text: str | None) -> tuple[int, int] | None:
    """`"10,20"` → `(10, 20)`; None or empty → None (the `--profile_steps` flag)."""
    if text is None or not text.strip():
        return None
    try:
        steps = tuple(int(part) for part in text.split(","))
    except ValueError:
        steps = None
    return check_profile_steps(steps if steps and len(steps) == 2 else text)


_FILES_EXAMPLES = {
    "tfrecord": "'data/train-*.tfrecord'",
    "csv": "'data/train-*.csv'",
    "npz": "data/train.npz",
    "image_folder": "photos/train (one folder per class)",
}


def check_image_shape(shape) -> tuple[int, int, int] | None:
    """Returns `shape` if it is None or `(height, width, channels)` of positive ints."""
    if shape is None:
        return None
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 3
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape)
    ):
        raise ConfigError(
            f"image_shape ({shape!r}) must be HEIGHT, WIDTH and CHANNELS, e.g. "
            "--image_shape=32x32x3."
        )
    return tuple(shape)


def parse_image_shape(text: str | None) -> tuple[int, int, int] | None:
    """`"32x32x3"` → `(32, 32, 3)`; None or empty → None (`--image_shape`)."""
    if text is None or not text.strip():
        return None
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        return check_image_shape(text)  # Raises, naming what was typed.
    return shape


def check_image_size(size) -> tuple[int, int] | None:
    """Returns `size` if it is None or `(height, width)` of positive ints."""
    if size is None:
        return None
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size)
    ):
        raise ConfigError(
            f"image_size ({size!r}) must be HEIGHT and WIDTH in pixels, e.g. --image_size=32x32."
        )
    return tuple(size)


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    """`"32x48"` → `(32, 48)`, `"32"` → `(32, 32)`; None or empty → None."""
    if text is None or not text.strip():
        return None
    parts = text.lower().split("x")
    try:
        size = tuple(int(part) for part in parts)
    except ValueError:
        size = None
    if size is not None and len(size) == 1:
        size = size * 2
    return check_image_size(size if size else text)


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

    def __post_init__(self):
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

    def __post_init__(self):
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
class TrainConfig:
    """Everything a run of the built-in job needs; field names equal the CLI flags.

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
      model: a registered model name (`mlp`, `cnn` or one a user registered).
      dataset: `digits`, `synthetic` or a TFDS name.
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
      global_batch_size: examples per update, over all replicas.
      epochs: passes over `steps_per_epoch` steps.
      steps_per_epoch: None means one pass over the training split.
      steps_per_loop: training steps run inside one `tf.function` call.
      optimizer: one of OPTIMIZERS.
      learning_rate: the optimizer's learning rate.
      seed: seeds weights, shuffling and synthetic data.
      shuffle: shuffle the training data each epoch (False keeps the source order).
      grad_accum_steps: micro-batches summed into one update.
      grad_compression, all_reduce_pack_bytes, collective_implementation,
        collective_timeout: see CommunicationConfig.
      sync_every, outer_optimizer, outer_learning_rate, outer_momentum: local SGD and
        the DiLoCo outer step; see LocalSGDConfig.
      mixed_precision: `none`, `mixed_float16` (with loss scaling) or `mixed_bfloat16`.
      ps_shards: `parameter_server`: parts each embedding table is split into across
        the ps tasks; None means one per ps task.
      isolate_network: run a locally launched cluster in a private network namespace.
      checkpoint_every_steps: checkpoint every this many steps too (needs model_dir).
      keep_checkpoints: the newest checkpoints kept.
      max_restarts: a locally launched cluster is started again this many times at most.
      min_workers: `multi_worker`, a locally launched cluster: when a worker's restarts
        are spent, go on without it while at least this many workers remain (same
        global batch, from the last checkpoint); None ends the job then.
      model_dir: checkpoints and the exported model go here; None keeps nothing.
      metrics_json: path of a JSON summary written by the chief; None writes none.
      profile_steps: `(first, last)` optimizer steps the chief traces with the
        TensorFlow profiler into MODEL_DIR/tensorboard/train; needs `model_dir`.
      verbose: every worker prints its progress, not only the chief.
    """

    strategy: str = "auto"
    num_workers: int | None = None
    num_ps: int | None = None
    num_devices: int | None = None
    gpus_per_worker: int = 0
    model: str = "mlp"
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
    global_batch_size: int = 64
    epochs: int = 20
    steps_per_epoch: int | None = None
    steps_per_loop: int = 32
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    seed: int = 0
    shuffle: bool = True
    grad_accum_steps: int = 1
    grad_compression: str = "none"
    all_reduce_pack_bytes: int = 0
    collective_implementation: str = "auto"
    collective_timeout: float | None = None
    sync_every: int = 1
    outer_optimizer: str = "none"
    outer_learning_rate: float = 0.7
    outer_momentum: float = 0.9
    mixed_precision: str = "none"
    ps_shards: int | None = None
    isolate_network: bool = True
    checkpoint_every_steps: int | None = None
    keep_checkpoints: int = 3
    max_restarts: int = 0
    min_workers: int | None = None
    model_dir: str | None = None
    metrics_json: str | None = None
    profile_steps: tuple[int, int] | None = None
    verbose: bool = False

    def __post_init__(self):
        check_choice("strategy", self.strategy, STRATEGIES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in (
            "num_examples",
            "global_batch_size",
            "epochs",
            "steps_per_loop",
            "learning_rate",
        ):
            check_positive(name, getattr(self, name))
        check_positive("num_workers", self.num_workers, allow_none=True)
        check_positive("num_devices", self.num_devices, allow_none=True)
        check_positive("grad_accum_steps", self.grad_accum_steps)
        check_positive("ps_shards", self.ps_shards, allow_none=True)
        check_positive("checkpoint_every_steps", self.checkpoint_every_steps, allow_none=True)
        check_positive("keep_checkpoints", self.keep_checkpoints)
        if self.max_restarts < 0:
            raise ConfigError(f"max_restarts ({self.max_restarts}) must be 0 or more.")
        if self.checkpoint_every_steps and not self.model_dir:
            raise ConfigError(
                f"checkpoint_every_steps ({self.checkpoint_every_steps}) needs somewhere to "
                "write; pass --model_dir=DIR."
            )
        check_choice("mixed_precision", self.mixed_precision, PRECISIONS)
        self._check_min_workers()
        self._check_data()
        self.communication()  # Validates the communication fields.
        self._check_local_sgd()
        check_positive("steps_per_epoch", self.steps_per_epoch, allow_none=True)
        if check_profile_steps(self.profile_steps) and not self.model_dir:
            raise ConfigError(
                f"profile_steps ({self.profile_steps!r}) needs model_dir: the trace is written "
                "under MODEL_DIR/tensorboard/train; pass --model_dir."
            )
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

    def _check_min_workers(self) -> None:
        """`min_workers` fits the launch: multi_worker, at most num_workers, same global batch."""
        if check_positive("min_workers", self.min_workers, allow_none=True) is None:
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
        if self.min_workers > workers:
            raise ConfigError(
                f"min_workers ({self.min_workers}) must be at most num_workers ({workers}); "
                f"pass min_workers={workers} or fewer."
            )
        per_worker = max(1, self.gpus_per_worker)
        counts = [n * per_worker for n in range(self.min_workers, workers + 1)]
        bad = [n for n in counts if self.global_batch_size % n]
        if bad:
            every = math.lcm(*counts)
            raise ConfigError(
                f"global_batch_size ({self.global_batch_size}) must be divisible by the number "
                f"of replicas of every cluster size from min_workers ({self.min_workers}) to "
                f"num_workers ({workers}), since a smaller cluster keeps the global batch, "
                f"but not by {bad[0]}; use {nearest_multiples(self.global_batch_size, every)}."
            )

    def _check_data(self) -> None:
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

    def _check_local_sgd(self) -> None:
        local = self.local_sgd()
        if not local.enabled:
            return
        if self.strategy == "parameter_server" or (self.strategy == "auto" and self.num_ps):
            raise ConfigError(
                f"sync_every ({self.sync_every}) and outer_optimizer ({self.outer_optimizer!r}) "
                "are for the synchronous strategies (mirrored, multi_worker); parameter_server "
                "workers already step without waiting for each other. Drop them or pass "
                "--strategy=multi_worker."
            )
        if self.checkpoint_every_steps and self.checkpoint_every_steps % self.sync_every:
            raise ConfigError(
                f"checkpoint_every_steps ({self.checkpoint_every_steps}) must be a multiple of "
                f"sync_every ({self.sync_every}): checkpoints are taken where the replicas "
                f"agree; use {nearest_multiples(self.checkpoint_every_steps, self.sync_every)}."
            )
        if self.grad_compression != "none":
            raise ConfigError(
                f"grad_compression ({self.grad_compression!r}) compresses the gradient "
                f"all-reduce, which sync_every ({self.sync_every}) replaces by averaging the "
                "weights in float32; drop --grad_compression."
            )
        if self.mixed_precision == "mixed_float16":
            raise ConfigError(
                f"mixed_precision 'mixed_float16' scales the loss by a factor the replicas must "
                f"agree on at every step, which sync_every ({self.sync_every}) does not give; "
                "use --mixed_precision=mixed_bfloat16 or none."
            )

    def local_sgd(self) -> LocalSGDConfig:
        return LocalSGDConfig(
            sync_every=self.sync_every,
            outer_optimizer=self.outer_optimizer,
            outer_learning_rate=self.outer_learning_rate,
            outer_momentum=self.outer_momentum,
        )

    @property
    def uses_data_service(self) -> bool:
        return self.data_service or bool(self.data_service_address)

    def communication(self) -> CommunicationConfig:
        return CommunicationConfig(
            grad_compression=self.grad_compression,
            all_reduce_pack_bytes=self.all_reduce_pack_bytes,
            collective_implementation=self.collective_implementation,
            collective_timeout=self.collective_timeout,
        )

    def launch_strategy(self) -> str:
        """The cluster layout a local launch needs: multi_worker or parameter_server."""
        if self.strategy == "parameter_server" or (self.strategy == "auto" and self.num_ps):
            return "parameter_server"
        return "multi_worker"

    def needs_local_cluster(self, cluster) -> bool:
        """True when the CLI must start the processes itself (no TF_CONFIG, several tasks).

        `cluster` is the parsed TF_CONFIG (a `launch.tf_config.ClusterConfig`) or None.
        """
        if cluster is not None:
            return False
        return (self.num_workers or 1) > 1 or self.launch_strategy() == "parameter_server"

    def check_cluster(self, cluster) -> None:
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
