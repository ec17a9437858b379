"""The trainer's flags, and the one mapping between them and the nested `JobConfig`.

Owns the absl flag definitions of `python -m tfdist.train` and nothing else: each flag is
named after the `JobConfig` field it sets (`tfdist.config.job`, section by section), so
`config_from_flags` builds the whole config by walking its fields, and `flags_for` writes a
config back as the command line of a launched cluster's tasks. A new option is a field and
a flag with its name; neither function changes.
"""

from __future__ import annotations

from collections.abc import Callable

from absl import flags

from tfdist.config import (
    COLLECTIVE_IMPLEMENTATIONS,
    COMPRESSIONS,
    OPTIMIZERS,
    OUTER_OPTIMIZERS,
    PRECISIONS,
    SHARD_POLICIES,
    STRATEGIES,
    JobConfig,
    parse_image_shape,
    parse_image_size,
    parse_profile_steps,
)
from tfdist.config.job import leaf_names

flags.DEFINE_enum(
    "strategy",
    "auto",
    STRATEGIES,
    "Distribution strategy. 'auto' picks parameter_server or multi_worker from TF_CONFIG "
    "(or from --num_ps/--num_workers), else mirrored over the local GPUs, or over "
    "--num_devices logical CPUs when there is no GPU.",
)
flags.DEFINE_integer(
    "num_workers",
    None,
    "Worker processes. Above 1 with no TF_CONFIG set, the trainer launches a local cluster "
    "on loopback itself (see --num_ps). With TF_CONFIG set, TF_CONFIG decides: leave it out, "
    "or give the count TF_CONFIG has. Default: TF_CONFIG's workers, else 1.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "num_ps",
    None,
    "Parameter-server processes for --strategy=parameter_server: at least 1 when the trainer "
    "launches the cluster (no TF_CONFIG). With TF_CONFIG set, TF_CONFIG decides: leave it out, "
    "or give the count TF_CONFIG has. Default: TF_CONFIG's ps tasks, else 0.",
    lower_bound=0,
)
flags.DEFINE_integer(
    "num_devices",
    None,
    "Replicas for --strategy=mirrored: that many GPUs, or logical CPU devices when there is "
    "no GPU. Default: all GPUs, or 2 CPU replicas.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "gpus_per_worker",
    0,
    "GPUs the local launcher gives each worker process of --strategy=multi_worker or "
    "parameter_server (via CUDA_VISIBLE_DEVICES; ps tasks and the parameter_server chief "
    "run on CPU). 0: every worker sees all GPUs. Ignored when TF_CONFIG is set.",
    lower_bound=0,
)
flags.DEFINE_string(
    "model",
    "mlp",
    "The model: mlp, cnn, recommender, a name added with tfdist.register_model, or your own "
    "build function as package.module:function (importable from the current folder or "
    "PYTHONPATH), called as function(input_shape=..., num_classes=...) inside the strategy's "
    "scope and returning an uncompiled keras.Model; the trainer adds the optimizer and loss.",
)
flags.DEFINE_string(
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
flags.DEFINE_string("data_dir", None, "TFDS data directory (TFDS's default if unset).")
flags.DEFINE_integer(
    "num_examples", 60000, "Training examples of --dataset=synthetic.", lower_bound=1
)
flags.DEFINE_string(
    "train_files",
    None,
    "Training files of --dataset=tfrecord, csv or npz: comma-separated globs, quoted, e.g. "
    "'data/train-*.tfrecord'; for image_folder a folder with one sub-folder per class.",
)
flags.DEFINE_string(
    "validation_files", None, "Validation files, as --train_files; unset: no validation."
)
flags.DEFINE_string(
    "label_key", "label", "The TFRecord feature, CSV column or npz array holding the label."
)
flags.DEFINE_string(
    "id_key",
    None,
    "The feature, column or npz array naming each example, hashed by --shard_policy=hash; "
    "unset: the file name and record number.",
)
flags.DEFINE_string(
    "feature_spec",
    None,
    "TFRecord features as NAME:DTYPE[:SHAPE],..., e.g. pixels:float32:8x8,label:int64 "
    "(DTYPE float32, int64 or string). Unset: inferred from the first record.",
)
flags.DEFINE_integer(
    "num_classes",
    None,
    "Label classes of a file dataset; unset: the largest label + 1.",
    lower_bound=1,
)
flags.DEFINE_string(
    "image_size",
    None,
    "HEIGHTxWIDTH (or one number) --dataset=image_folder images are "
    "resized to; unset: the size of the first image.",
)
flags.DEFINE_string(
    "image_shape",
    None,
    "HEIGHTxWIDTHxCHANNELS, e.g. 32x32x3: --dataset=synthetic examples are images of this "
    "shape (with --model=cnn, the compute-heavy reference job); unset: 784 features.",
)
flags.DEFINE_enum(
    "shard_policy",
    "auto",
    SHARD_POLICIES,
    "How the workers split the training data: file (files per worker), data (every N-th "
    "example), hash (by a hash of each example's id, see --id_key), random (a seeded "
    "permutation split in parts), off (every worker reads everything), auto (file when "
    "there are at least as many files as workers, else data).",
)
flags.DEFINE_boolean(
    "data_service",
    False,
    "Read the training data through a tf.data service (distributed_epoch: each example goes "
    "to one worker per pass). A local launch also starts its dispatcher and "
    "--data_service_workers data workers; a single process starts them in-process.",
)
flags.DEFINE_string(
    "data_service_address",
    None,
    "grpc://HOST:PORT of the dispatcher of a running tf.data service (python -m "
    "tfdist.data_service); implies --data_service.",
)
flags.DEFINE_integer(
    "data_service_workers",
    1,
    "Data workers a local launch starts with --data_service.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "global_batch_size",
    64,
    "Examples per optimizer update over all replicas; must divide by the replicas. Under "
    "parameter_server, examples per worker step.",
    lower_bound=1,
)
flags.DEFINE_integer("epochs", 20, "Epochs to train.", lower_bound=1)
flags.DEFINE_integer(
    "steps_per_epoch",
    None,
    "Steps per epoch. Default: one pass over the training split.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "steps_per_loop",
    32,
    "Training steps run inside one tf.function call (fewer Python "
    "round trips; larger is faster for small models).",
    lower_bound=1,
)
flags.DEFINE_enum("optimizer", "adam", OPTIMIZERS, "Keras optimizer.")
flags.DEFINE_float("learning_rate", 1e-3, "Learning rate.", lower_bound=0.0)
flags.DEFINE_integer("seed", 0, "Seed for weights, shuffling and synthetic data.")
flags.DEFINE_boolean(
    "shuffle",
    True,
    "Shuffle the training data each epoch; --noshuffle keeps the source "
    "order (deterministic runs, e.g. comparing strategies step for step).",
)
flags.DEFINE_integer(
    "grad_accum_steps",
    1,
    "Micro-batches of --global_batch_size summed into one update: the update covers "
    "grad_accum_steps x global_batch_size examples with one all-reduce. Use it when the "
    "batch you want does not fit in memory, or to all-reduce less often.",
    lower_bound=1,
)
flags.DEFINE_enum(
    "grad_compression",
    "none",
    COMPRESSIONS,
    "Dtype of gradients in the all-reduce of sync strategies (mirrored, multi_worker): fp16 "
    "or bf16 halve the bytes sent; gradients are cast back before the update.",
)
flags.DEFINE_integer(
    "all_reduce_pack_bytes",
    0,
    "multi_worker: pack gradients into all-reduce chunks of this many bytes (0: TF decides).",
    lower_bound=0,
)
flags.DEFINE_enum(
    "collective_implementation",
    "auto",
    COLLECTIVE_IMPLEMENTATIONS,
    "multi_worker collective implementation: ring (gRPC, CPU or GPU), nccl (GPUs), auto.",
)
flags.DEFINE_float(
    "collective_timeout",
    None,
    "multi_worker: seconds a collective waits for its peers before failing (default: forever).",
)
flags.DEFINE_integer(
    "sync_every",
    1,
    "Local SGD for mirrored and multi_worker: each replica takes this many optimizer steps "
    "on its own batches with no gradient all-reduce, then the replicas average their weights "
    "in one all-reduce (also at each epoch end; optimizer slots at checkpoints, stops and "
    "epoch ends), so synchronisations fall this many times; --checkpoint_every_steps must "
    "be a multiple. Under parameter_server: local steps, each worker takes this many steps "
    "on its own copy of the weights, then sends the ps one update (its change) and fetches "
    "the weights. 1: every step synchronous (or, under parameter_server, an update of the "
    "ps). See --outer_optimizer.",
    lower_bound=1,
)
flags.DEFINE_enum(
    "outer_optimizer",
    "none",
    OUTER_OPTIMIZERS,
    "The DiLoCo outer step at each --sync_every synchronisation: none takes the average as "
    "the weights; sgd or nesterov treat (last synchronised weights - average) as a gradient "
    "and apply it with --outer_learning_rate and --outer_momentum. Under parameter_server "
    "each worker's update is its share of the average, its change divided by the workers.",
)
flags.DEFINE_float(
    "outer_learning_rate",
    0.7,
    "Learning rate of --outer_optimizer (DiLoCo uses 0.7).",
    lower_bound=0.0,
)
flags.DEFINE_float(
    "outer_momentum",
    0.9,
    "Momentum of --outer_optimizer, in [0, 1) (DiLoCo uses 0.9).",
    lower_bound=0.0,
)
flags.DEFINE_enum(
    "mixed_precision",
    "none",
    PRECISIONS,
    "Compute in float16 (with dynamic loss scaling) or bfloat16, keeping float32 variables. "
    "Pays off on GPUs/TPUs with fast half-precision units; on CPU it is usually slower.",
)
flags.DEFINE_bool(
    "jit_compile",
    False,
    "Compile each step with XLA, as Keras' compile(jit_compile=True): with one replica the "
    "whole step (the optimizer's update too), with several each replica's forward and "
    "backward pass. Not under parameter_server.",
)
flags.DEFINE_integer(
    "ps_shards",
    None,
    "parameter_server: split each embedding table (ShardedEmbedding, e.g. --model="
    "recommender) row-wise into this many parts across the ps tasks, for tables larger than "
    "one server. Default: one part per ps task (--num_ps); 1 keeps tables whole.",
    lower_bound=1,
)
flags.DEFINE_boolean(
    "isolate_network",
    True,
    "When the trainer launches a local cluster (--num_workers > 1, no TF_CONFIG), run all "
    "its tasks in one private Linux network namespace (loopback only) so TensorFlow's "
    "unauthenticated gRPC ports are unreachable from other machines. Needs root and "
    "iproute2; otherwise the launcher says it could not. --noisolate_network turns it off.",
)
flags.DEFINE_integer(
    "checkpoint_every_steps",
    None,
    "With --model_dir, also checkpoint every this many optimizer steps (epoch ends are "
    "always saved); a rerun resumes at that step, data position included.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "keep_checkpoints", 3, "The newest checkpoints kept under MODEL_DIR/checkpoints.", lower_bound=1
)
flags.DEFINE_integer(
    "max_restarts",
    0,
    "When the trainer launches a local cluster: if a task fails, stop all, start the cluster "
    "again (it resumes from the latest checkpoint under --model_dir), at most this many "
    "times; then fail with a summary of every failure. A parameter_server worker is "
    "restarted in place instead, as often, while the others go on.",
    lower_bound=0,
)
flags.DEFINE_integer(
    "min_workers",
    None,
    "With --strategy=multi_worker and a local cluster: when a worker fails again after "
    "--max_restarts restarts, go on without it while at least this many workers remain: the "
    "cluster is planned again with one worker fewer and resumes from the latest checkpoint "
    "with the same --global_batch_size (which every cluster size's replicas must divide), "
    "with --max_restarts restarts of its own. Unset: the job fails then.",
    lower_bound=1,
)
flags.DEFINE_string(
    "model_dir",
    None,
    "Checkpoints go to MODEL_DIR/checkpoints each epoch (a rerun resumes from the latest) "
    "and the chief exports MODEL_DIR/model.keras at the end. Unset: nothing is kept.",
)
flags.DEFINE_string("metrics_json", None, "Path of a JSON summary written by the chief at the end.")
flags.DEFINE_string(
    "profile_steps",
    None,
    "FIRST,LAST: the chief traces the training loops that run these optimizer steps with the "
    "TensorFlow profiler, into MODEL_DIR/tensorboard/train (needs --model_dir; open the "
    "Profile tab of TensorBoard).",
)
flags.DEFINE_boolean(
    "verbose",
    False,
    "Every worker prints its progress, and a launched local cluster also shows TensorFlow's "
    "start-up log lines (CUDA stub, cuInit, oneDNN) and the known harmless TensorFlow "
    "warnings; by default only the chief prints progress and those lines are left out (see "
    "--model_dir for TensorBoard summaries).",
)


# Flags typed as text on the command line whose field holds a parsed value.
_PARSERS: dict[str, Callable] = {
    "image_size": parse_image_size,
    "image_shape": parse_image_shape,
    "profile_steps": parse_profile_steps,
}
_FORMATS: dict[str, Callable] = {
    "image_size": lambda size: "x".join(map(str, size)),
    "image_shape": lambda shape: "x".join(map(str, shape)),
    "profile_steps": lambda steps: ",".join(map(str, steps)),
}


def config_from_flags() -> JobConfig:
    """The parsed flags as one frozen `JobConfig` (flag names equal leaf field names)."""
    values = {}
    for name in leaf_names():
        if name in flags.FLAGS:
            raw = flags.FLAGS[name].value
            values[name] = _PARSERS[name](raw) if name in _PARSERS else raw
    return JobConfig.from_flat(**values)


def flags_for(config: JobConfig) -> list[str]:
    """The command-line flags that give `config` (those that differ from the defaults),
    then absl's own flags that were set on this command line (e.g. `--verbosity`)."""
    defaults = JobConfig().flat()
    arguments = []
    for name, value in config.flat().items():
        if name not in flags.FLAGS or value == defaults[name]:
            continue
        if isinstance(value, bool):
            arguments.append(f"--{name}" if value else f"--no{name}")
        elif value is not None:
            arguments.append(f"--{name}={_FORMATS.get(name, str)(value)}")
    ours = set(defaults)
    others = {
        flag.serialize()
        for name in flags.FLAGS
        if (flag := flags.FLAGS[name]).present and name not in ours and name not in _SKIPPED
    }
    return arguments + sorted(others)


_SKIPPED = {"flagfile", "undefok", "help", "helpfull", "helpshort", "helpxml", "only_check_args"}
