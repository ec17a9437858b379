"""The command-line trainer: `python -m tfdist.train` (console script `tfdist-train`).

Owns the absl flags and nothing else: flags become one frozen `TrainConfig`;
then, in this order, the process either launches a local cluster (several
workers asked for and no TF_CONFIG), runs a parameter-server task's server
(TF_CONFIG says this task is a ps or worker of a `parameter_server` cluster),
or runs the job. User mistakes end with one line on stderr and exit code 2.
TensorFlow is imported only when this process trains or serves. `USAGE` is what
`--help` prints (absl prints the main module's docstring; `main` sets it).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence

_STARTED_AT = time.time()

from absl import app, flags  # noqa: E402

from tfdist.config import (  # noqa: E402
    COLLECTIVE_IMPLEMENTATIONS,
    COMPRESSIONS,
    OPTIMIZERS,
    OUTER_OPTIMIZERS,
    PRECISIONS,
    SHARD_POLICIES,
    STRATEGIES,
    ConfigError,
    TrainConfig,
    parse_image_shape,
    parse_image_size,
    parse_profile_steps,
)
from tfdist.distribute.cluster import read_tf_config  # noqa: E402

_STRATEGY = flags.DEFINE_enum(
    "strategy",
    "auto",
    STRATEGIES,
    "Distribution strategy. 'auto' picks parameter_server or multi_worker from TF_CONFIG "
    "(or from --num_ps/--num_workers), else mirrored over the local GPUs, or over "
    "--num_devices logical CPUs when there is no GPU.",
)
_NUM_WORKERS = flags.DEFINE_integer(
    "num_workers",
    None,
    "Worker processes. Above 1 with no TF_CONFIG set, the trainer launches a local cluster "
    "on loopback itself (see --num_ps). With TF_CONFIG set, TF_CONFIG decides: leave it out, "
    "or give the count TF_CONFIG has. Default: TF_CONFIG's workers, else 1.",
    lower_bound=1,
)
_NUM_PS = flags.DEFINE_integer(
    "num_ps",
    None,
    "Parameter-server processes for --strategy=parameter_server: at least 1 when the trainer "
    "launches the cluster (no TF_CONFIG). With TF_CONFIG set, TF_CONFIG decides: leave it out, "
    "or give the count TF_CONFIG has. Default: TF_CONFIG's ps tasks, else 0.",
    lower_bound=0,
)
_NUM_DEVICES = flags.DEFINE_integer(
    "num_devices",
    None,
    "Replicas for --strategy=mirrored: that many GPUs, or logical CPU devices when there is "
    "no GPU. Default: all GPUs, or 2 CPU replicas.",
    lower_bound=1,
)
_GPUS_PER_WORKER = flags.DEFINE_integer(
    "gpus_per_worker",
    0,
    "GPUs the local launcher gives each worker process of --strategy=multi_worker or "
    "parameter_server (via CUDA_VISIBLE_DEVICES; ps tasks and the parameter_server chief "
    "run on CPU). 0: every worker sees all GPUs. Ignored when TF_CONFIG is set.",
    lower_bound=0,
)
_MODEL = flags.DEFINE_string(
    "model",
    "mlp",
    "The model: mlp, cnn, recommender, a name added with tfdist.register_model, or your own "
    "build function as package.module:function (importable from the current folder or "
    "PYTHONPATH), called as function(input_shape=..., num_classes=...) inside the strategy's "
    "scope and returning an uncompiled keras.Model; the trainer adds the optimizer and loss.",
)
_DATASET = flags.DEFINE_string(
    "dataset",
    "digits",
    "digits (1,797 real 8x8 handwritten digits, bundled), synthetic (784 features, 10 "
    "classes, size --num_examples), tfrecord, csv, npz or image_folder (files from "
    "--train_files and --validation_files), a TFDS name prepared under --data_dir, or your "
    "own source function as package.module:function, called with no arguments and returning "
    "arrays (x_train, y_train) or (x_train, y_train, x_val, y_val), or a DataSource such as "
    "tfdist.data.pipeline.numpy_source(...); the trainer shards it between the workers "
    "(--shard_policy), so each example is seen once per epoch.",
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data directory (TFDS's default if unset).")
_NUM_EXAMPLES = flags.DEFINE_integer(
    "num_examples", 60000, "Training examples of --dataset=synthetic.", lower_bound=1
)
_TRAIN_FILES = flags.DEFINE_string(
    "train_files",
    None,
    "Training files of --dataset=tfrecord, csv or npz: comma-separated globs, quoted, e.g. "
    "'data/train-*.tfrecord'; for image_folder a folder with one sub-folder per class.",
)
_VALIDATION_FILES = flags.DEFINE_string(
    "validation_files", None, "Validation files, as --train_files; unset: no validation."
)
_LABEL_KEY = flags.DEFINE_string(
    "label_key", "label", "The TFRecord feature, CSV column or npz array holding the label."
)
_ID_KEY = flags.DEFINE_string(
    "id_key",
    None,
    "The feature, column or npz array naming each example, hashed by --shard_policy=hash; "
    "unset: the file name and record number.",
)
_FEATURE_SPEC = flags.DEFINE_string(
    "feature_spec",
    None,
    "TFRecord features as NAME:DTYPE[:SHAPE],..., e.g. pixels:float32:8x8,label:int64 "
    "(DTYPE float32, int64 or string). Unset: inferred from the first record.",
)
_NUM_CLASSES = flags.DEFINE_integer(
    "num_classes",
    None,
    "Label classes of a file dataset; unset: the largest label + 1.",
    lower_bound=1,
)
_IMAGE_SIZE = flags.DEFINE_string(
    "image_size",
    None,
    "HEIGHTxWIDTH (or one number) --dataset=image_folder images are "
    "resized to; unset: the size of the first image.",
)
_IMAGE_SHAPE = flags.DEFINE_string(
    "image_shape",
    None,
    "HEIGHTxWIDTHxCHANNELS, e.g. 32x32x3: --dataset=synthetic examples are images of this "
    "shape (with --model=cnn, the compute-heavy reference job); unset: 784 features.",
)
_SHARD_POLICY = flags.DEFINE_enum(
    "shard_policy",
    "auto",
    SHARD_POLICIES,
    "How the workers split the training data: file (files per worker), data (every N-th "
    "example), hash (by a hash of each example's id, see --id_key), random (a seeded "
    "permutation split in parts), off (every worker reads everything), auto (file when "
    "there are at least as many files as workers, else data).",
)
_DATA_SERVICE = flags.DEFINE_boolean(
    "data_service",
    False,
    "Read the training data through a tf.data service (distributed_epoch: each example goes "
    "to one worker per pass). A local launch also starts its dispatcher and "
    "--data_service_workers data workers; a single process starts them in-process.",
)
_DATA_SERVICE_ADDRESS = flags.DEFINE_string(
    "data_service_address",
    None,
    "grpc://HOST:PORT of the dispatcher of a running tf.data service (python -m "
    "tfdist.data_service); implies --data_service.",
)
_DATA_SERVICE_WORKERS = flags.DEFINE_integer(
    "data_service_workers",
    1,
    "Data workers a local launch starts with --data_service.",
    lower_bound=1,
)
_GLOBAL_BATCH_SIZE = flags.DEFINE_integer(
    "global_batch_size",
    64,
    "Examples per optimizer update over all replicas; must divide by the replicas. Under "
    "parameter_server, examples per worker step.",
    lower_bound=1,
)
_EPOCHS = flags.DEFINE_integer("epochs", 20, "Epochs to train.", lower_bound=1)
_STEPS_PER_EPOCH = flags.DEFINE_integer(
    "steps_per_epoch",
    None,
    "Steps per epoch. Default: one pass over the training split.",
    lower_bound=1,
)
_STEPS_PER_LOOP = flags.DEFINE_integer(
    "steps_per_loop",
    32,
    "Training steps run inside one tf.function call (fewer Python "
    "round trips; larger is faster for small models).",
    lower_bound=1,
)
_OPTIMIZER = flags.DEFINE_enum("optimizer", "adam", OPTIMIZERS, "Keras optimizer.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "Learning rate.", lower_bound=0.0)
_SEED = flags.DEFINE_integer("seed", 0, "Seed for weights, shuffling and synthetic data.")
_SHUFFLE = flags.DEFINE_boolean(
    "shuffle",
    True,
    "Shuffle the training data each epoch; --noshuffle keeps the source "
    "order (deterministic runs, e.g. comparing strategies step for step).",
)
_GRAD_ACCUM_STEPS = flags.DEFINE_integer(
    "grad_accum_steps",
    1,
    "Micro-batches of --global_batch_size summed into one update: the update covers "
    "grad_accum_steps x global_batch_size examples with one all-reduce. Use it when the "
    "batch you want does not fit in memory, or to all-reduce less often.",
    lower_bound=1,
)
_GRAD_COMPRESSION = flags.DEFINE_enum(
    "grad_compression",
    "none",
    COMPRESSIONS,
    "Dtype of gradients in the all-reduce of sync strategies (mirrored, multi_worker): fp16 "
    "or bf16 halve the bytes sent; gradients are cast back before the update.",
)
_ALL_REDUCE_PACK_BYTES = flags.DEFINE_integer(
    "all_reduce_pack_bytes",
    0,
    "multi_worker: pack gradients into all-reduce chunks of this many bytes (0: TF decides).",
    lower_bound=0,
)
_COLLECTIVE_IMPLEMENTATION = flags.DEFINE_enum(
    "collective_implementation",
    "auto",
    COLLECTIVE_IMPLEMENTATIONS,
    "multi_worker collective implementation: ring (gRPC, CPU or GPU), nccl (GPUs), auto.",
)
_COLLECTIVE_TIMEOUT = flags.DEFINE_float(
    "collective_timeout",
    None,
    "multi_worker: seconds a collective waits for its peers before failing (default: forever).",
)
_SYNC_EVERY = flags.DEFINE_integer(
    "sync_every",
    1,
    "Local SGD for mirrored and multi_worker: each replica takes this many optimizer steps "
    "on its own batches with no gradient all-reduce, then the replicas average their weights "
    "in one all-reduce (also at each epoch end; optimizer slots at the end of each loop "
    "call), so synchronisations fall this many times. 1: synchronous training. "
    "--checkpoint_every_steps must be a multiple; "
    "see --outer_optimizer.",
    lower_bound=1,
)
_OUTER_OPTIMIZER = flags.DEFINE_enum(
    "outer_optimizer",
    "none",
    OUTER_OPTIMIZERS,
    "The DiLoCo outer step at each --sync_every synchronisation: none takes the average as "
    "the weights; sgd or nesterov treat (last synchronised weights - average) as a gradient "
    "and apply it with --outer_learning_rate and --outer_momentum.",
)
_OUTER_LEARNING_RATE = flags.DEFINE_float(
    "outer_learning_rate",
    0.7,
    "Learning rate of --outer_optimizer (DiLoCo uses 0.7).",
    lower_bound=0.0,
)
_OUTER_MOMENTUM = flags.DEFINE_float(
    "outer_momentum",
    0.9,
    "Momentum of --outer_optimizer, in [0, 1) (DiLoCo uses 0.9).",
    lower_bound=0.0,
)
_MIXED_PRECISION = flags.DEFINE_enum(
    "mixed_precision",
    "none",
    PRECISIONS,
    "Compute in float16 (with dynamic loss scaling) or bfloat16, keeping float32 variables. "
    "Pays off on GPUs/TPUs with fast half-precision units; on CPU it is usually slower.",
)
_PS_SHARDS = flags.DEFINE_integer(
    "ps_shards",
    None,
    "parameter_server: split each embedding table (ShardedEmbedding, e.g. --model="
    "recommender) row-wise into this many parts across the ps tasks, for tables larger than "
    "one server. Default: one part per ps task (--num_ps); 1 keeps tables whole.",
    lower_bound=1,
)
_ISOLATE_NETWORK = flags.DEFINE_boolean(
    "isolate_network",
    True,
    "When the trainer launches a local cluster (--num_workers > 1, no TF_CONFIG), run all "
    "its tasks in one private Linux network namespace (loopback only) so TensorFlow's "
    "unauthenticated gRPC ports are unreachable from other machines. Needs root and "
    "iproute2; otherwise the launcher says it could not. --noisolate_network turns it off.",
)
_CHECKPOINT_EVERY_STEPS = flags.DEFINE_integer(
    "checkpoint_every_steps",
    None,
    "With --model_dir, also checkpoint every this many optimizer steps (epoch ends are "
    "always saved); a rerun resumes at that step, data position included.",
    lower_bound=1,
)
_KEEP_CHECKPOINTS = flags.DEFINE_integer(
    "keep_checkpoints", 3, "The newest checkpoints kept under MODEL_DIR/checkpoints.", lower_bound=1
)
_MAX_RESTARTS = flags.DEFINE_integer(
    "max_restarts",
    0,
    "When the trainer launches a local cluster: if a task fails, stop all, start the cluster "
    "again (it resumes from the latest checkpoint under --model_dir), at most this many "
    "times; then fail with a summary of every failure.",
    lower_bound=0,
)
_MIN_WORKERS = flags.DEFINE_integer(
    "min_workers",
    None,
    "With --strategy=multi_worker and a local cluster: when a worker fails again after "
    "--max_restarts restarts, go on without it while at least this many workers remain: the "
    "cluster is planned again with one worker fewer and resumes from the latest checkpoint "
    "with the same --global_batch_size (which every cluster size's replicas must divide), "
    "with --max_restarts restarts of its own. Unset: the job fails then.",
    lower_bound=1,
)
_MODEL_DIR = flags.DEFINE_string(
    "model_dir",
    None,
    "Checkpoints go to MODEL_DIR/checkpoints each epoch (a rerun resumes from the latest) "
    "and the chief exports MODEL_DIR/model.keras at the end. Unset: nothing is kept.",
)
_METRICS_JSON = flags.DEFINE_string(
    "metrics_json", None, "Path of a JSON summary written by the chief at the end."
)
_PROFILE_STEPS = flags.DEFINE_string(
    "profile_steps",
    None,
    "FIRST,LAST: the chief traces the training loops that run these optimizer steps with the "
    "TensorFlow profiler, into MODEL_DIR/tensorboard/train (needs --model_dir; open the "
    "Profile tab of TensorBoard).",
)
_VERBOSE = flags.DEFINE_boolean(
    "verbose",
    False,
    "Every worker prints its progress, and a launched local cluster also shows TensorFlow's "
    "start-up log lines (CUDA stub, cuInit, oneDNN) and the known harmless TensorFlow "
    "warnings; by default only the chief prints progress and those lines are left out (see "
    "--model_dir for TensorBoard summaries).",
)


def config_from_flags() -> TrainConfig:
    """The parsed flags as one frozen config (flag names equal field names)."""
    return TrainConfig(
        strategy=_STRATEGY.value,
        num_workers=_NUM_WORKERS.value,
        num_ps=_NUM_PS.value,
        num_devices=_NUM_DEVICES.value,
        gpus_per_worker=_GPUS_PER_WORKER.value,
        model=_MODEL.value,
        dataset=_DATASET.value,
        data_dir=_DATA_DIR.value,
        num_examples=_NUM_EXAMPLES.value,
        train_files=_TRAIN_FILES.value,
        validation_files=_VALIDATION_FILES.value,
        label_key=_LABEL_KEY.value,
        id_key=_ID_KEY.value,
        feature_spec=_FEATURE_SPEC.value,
        num_classes=_NUM_CLASSES.value,
        image_size=parse_image_size(_IMAGE_SIZE.value),
        image_shape=parse_image_shape(_IMAGE_SHAPE.value),
        shard_policy=_SHARD_POLICY.value,
        data_service=_DATA_SERVICE.value,
        data_service_address=_DATA_SERVICE_ADDRESS.value,
        data_service_workers=_DATA_SERVICE_WORKERS.value,
        global_batch_size=_GLOBAL_BATCH_SIZE.value,
        epochs=_EPOCHS.value,
        steps_per_epoch=_STEPS_PER_EPOCH.value,
        steps_per_loop=_STEPS_PER_LOOP.value,
        optimizer=_OPTIMIZER.value,
        learning_rate=_LEARNING_RATE.value,
        seed=_SEED.value,
        shuffle=_SHUFFLE.value,
        model_dir=_MODEL_DIR.value,
        metrics_json=_METRICS_JSON.value,
        profile_steps=parse_profile_steps(_PROFILE_STEPS.value),
        verbose=_VERBOSE.value,
        grad_accum_steps=_GRAD_ACCUM_STEPS.value,
        grad_compression=_GRAD_COMPRESSION.value,
        all_reduce_pack_bytes=_ALL_REDUCE_PACK_BYTES.value,
        collective_implementation=_COLLECTIVE_IMPLEMENTATION.value,
        collective_timeout=_COLLECTIVE_TIMEOUT.value,
        mixed_precision=_MIXED_PRECISION.value,
        sync_every=_SYNC_EVERY.value,
        outer_optimizer=_OUTER_OPTIMIZER.value,
        outer_learning_rate=_OUTER_LEARNING_RATE.value,
        outer_momentum=_OUTER_MOMENTUM.value,
        ps_shards=_PS_SHARDS.value,
        isolate_network=_ISOLATE_NETWORK.value,
        checkpoint_every_steps=_CHECKPOINT_EVERY_STEPS.value,
        keep_checkpoints=_KEEP_CHECKPOINTS.value,
        max_restarts=_MAX_RESTARTS.value,
        min_workers=_MIN_WORKERS.value,
    )


def _plan_data_service(config: TrainConfig):
    """The tf.data service tasks a local launch starts, or None (none asked, or one given)."""
    if not config.data_service or config.data_service_address:
        return None
    from launch.data_service import plan_data_service

    return plan_data_service(
        command=[sys.executable, "-m", "tfdist.data_service"],
        num_workers=config.data_service_workers,
        base_env=dict(os.environ),
    )


def without_flag(args: Sequence[str], name: str) -> list[str]:
    """`args` without absl flag `name` in any spelling: --name=V, -name=V, --name V, -name V."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in (f"--{name}", f"-{name}"):
            skip = True
        elif not arg.startswith((f"--{name}=", f"-{name}=")):
            kept.append(arg)
    return kept


def _task_command(argv, service, num_workers: int) -> list[str]:
    """A launched task's command: the user's flags (less the launcher's --min_workers), the
    tf.data service's address, and this attempt's --num_workers (the last one wins)."""
    return [
        sys.executable,
        "-m",
        "tfdist.train",
        *without_flag(argv[1:], "min_workers"),
        *(service.trainer_args if service else ()),
        f"--num_workers={num_workers}",
    ]


def _launch_local_cluster(config: TrainConfig, argv) -> int:
    from launch import LaunchSpec, run_launch, tfdist_server_command, visible_gpu_ids

    gpu_ids = visible_gpu_ids(environ=os.environ)

    def spec(num_workers: int = config.num_workers or 1) -> LaunchSpec:
        # Planned anew for each attempt: fresh service ports too.
        service = _plan_data_service(config)
        return LaunchSpec(
            strategy=config.launch_strategy(),
            command=_task_command(argv, service, num_workers),
            server_command=tfdist_server_command(),
            num_workers=num_workers,
            num_ps=(config.num_ps or 0) if config.launch_strategy() == "parameter_server" else 0,
            base_env=dict(os.environ),
            gpus_per_worker=config.gpus_per_worker,
            gpu_ids=gpu_ids,
            isolate_network=config.isolate_network,
            extra_tasks=service.launches if service else (),
        )

    if (config.max_restarts or config.min_workers) and not config.model_dir:
        what = (
            f"--max_restarts={config.max_restarts}"
            if config.max_restarts
            else f"--min_workers={config.min_workers}"
        )
        print(
            f"tfdist.train: warning: {what} without --model_dir restarts from step 0: "
            "nothing is checkpointed.",
            flush=True,
        )
    report = run_launch(
        spec,
        max_restarts=config.max_restarts,
        min_workers=config.min_workers,
        resize=lambda _, num_workers: spec(num_workers),
        output=_task_output(config),
        announce=lambda line: print(f"tfdist.train: {line}", flush=True),
    )
    if report.exit_code:
        print(report.attempts[-1].summary(), file=sys.stderr, flush=True)
        if report.restarts:
            print(report.summary(), file=sys.stderr, flush=True)
    return report.exit_code


def run(argv) -> int:
    """Runs the trainer for already-parsed flags; `argv` is the full command line."""
    config = config_from_flags()
    cluster = read_tf_config()
    config.check_cluster(cluster)  # With TF_CONFIG, the cluster's shape comes from it.
    if config.needs_local_cluster(cluster):
        return _launch_local_cluster(config, argv)
    if cluster is not None and cluster.has_ps and cluster.task.type in ("ps", "worker"):
        from tfdist.distribute.server import serve, without_keras

        without_keras()  # A server needs TensorFlow's runtime, not Keras.
        serve(cluster)
        return 0
    from tfdist.cli.job import run_job

    summary = run_job(config, cluster=cluster, started_at=_STARTED_AT)
    if summary["val_accuracy"] is not None:
        print(
            f"tfdist.train: done - val_accuracy {summary['val_accuracy']:.4f}, "
            f"{summary['examples_per_sec']:,.0f} examples/s, "
            f"{summary['wall_seconds']:.1f} s",
            flush=True,
        )
    return 0


def _in_flags(error: Exception) -> str:
    """The library's message, its arguments spelled as this CLI's flags."""
    from tfdist.cli.messages import with_flag_spellings

    ours = [
        flag.name
        for module, defined in flags.FLAGS.flags_by_module_dict().items()
        if module.startswith("tfdist")
        for flag in defined
    ]
    return with_flag_spellings(str(error), ours)


def _user_error_exit(error: Exception) -> int:
    print(f"tfdist.train: error: {_in_flags(error)}", file=sys.stderr, flush=True)
    return 2


def _task_output(config: TrainConfig):
    """Where a launched cluster's output goes: stdout, less TensorFlow's start-up noise
    (`launch.noise`) unless --verbose."""
    from launch.noise import QuietOutput

    return None if config.verbose else QuietOutput(lambda: sys.stdout)


def _ignore_known_warnings() -> None:
    """Filters the tf.data options UserWarning TensorFlow raises when the trainer iterates a
    dataset inside a traced function (harmless, once per trace); --verbose keeps it."""
    import warnings

    from launch.noise import TF_DATA_OPTIONS_WARNING

    warnings.filterwarnings("ignore", message=TF_DATA_OPTIONS_WARNING, category=UserWarning)


def _main(argv) -> int:
    from absl import logging

    from launch import LaunchError

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines drown the epochs.
    if not _VERBOSE.value:
        _ignore_known_warnings()

    try:
        return run(argv)
    except (ConfigError, LaunchError) as error:
        return _user_error_exit(error)
    except Exception as error:  # The trainer's own stops: one line, not a traceback.
        from tfdist.training.history import TrainingDiverged
        from tfdist.training.preemption import Preempted

        if isinstance(error, Preempted):
            print(f"tfdist.train: {_in_flags(error)}", file=sys.stderr, flush=True)
            return 128 + signal.SIGTERM
        from tfdist.training.checkpoints import CheckpointWriteError

        if isinstance(error, (TrainingDiverged, CheckpointWriteError)):
            print(f"tfdist.train: error: {_in_flags(error)}", file=sys.stderr, flush=True)
            return 1
        raise


def _parse_flags(argv):
    """absl's flag parsing, but a bad flag ends as every user mistake does: one line, exit 2.

    absl's own parser prints the error over several lines plus a help hint and exits 1.
    Arguments that are not flags are refused too: the trainer takes flags only.
    """
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as error:
        message = " ".join(str(error).split())  # absl splits long messages over lines.
        print(f"tfdist.train: error: {message} (see --helpfull).", file=sys.stderr, flush=True)
        sys.exit(2)
    if len(rest) > 1:
        print(
            f"tfdist.train: error: unexpected argument(s) {rest[1:]!r}: the trainer takes "
            "only --flags, e.g. --epochs=5 (see --helpfull).",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(2)
    return rest


USAGE = """Trains a Keras model under a TensorFlow distribution strategy, here or on a cluster.

The trainer builds a model (a built-in one or your own), reads a dataset (bundled,
files, TFDS or your own arrays), shards it between the workers so each example is
seen once per epoch, and trains under --strategy: mirrored (the GPUs, or logical
CPUs, of one process), multi_worker (synchronous, one process per worker) or
parameter_server (asynchronous workers and parameter servers). With --num_workers
above 1 and no TF_CONFIG it starts the local cluster itself; where a launcher or
scheduler sets TF_CONFIG, each process plays its task. It prints one line per epoch;
with --model_dir it checkpoints, resumes and exports the model.

Examples:

  # One process, mirrored over two logical CPUs (or all GPUs), bundled digits:
  python -m tfdist.train --strategy=mirrored --epochs=5

  # Two synchronous workers on loopback, your own model and data:
  python -m tfdist.train --strategy=multi_worker --num_workers=2 \\
      --model=my_models:build_model --dataset=my_data:load_arrays

  # Two workers and a parameter server, checkpoints and resume under /tmp/run:
  python -m tfdist.train --strategy=parameter_server --num_workers=2 --num_ps=1 \\
      --epochs=10 --model_dir=/tmp/run

Your own model, --model=package.module:function: called as function(input_shape=...,
num_classes=...) inside the strategy's scope; returns an uncompiled keras.Model.
Your own data, --dataset=package.module:function: called with no arguments; returns
(x_train, y_train), (x_train, y_train, x_val, y_val) or a tfdist DataSource. Both
modules must import from the current folder or PYTHONPATH.

The trainer's own flags are those --helpfull lists under tfdist.cli.train.
"""


def main(argv=None) -> None:
    """Console-script entry: parses flags (`--flagfile` included) and exits with the status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Before TensorFlow loads; the CLI only.
    main_module = sys.modules.get("__main__")
    if main_module is not None:  # absl's --help prints the main module's docstring.
        main_module.__doc__ = USAGE
    app.run(
        lambda parsed: sys.exit(_main(sys.argv if argv is None else argv)),
        argv=argv,
        flags_parser=_parse_flags,
    )
