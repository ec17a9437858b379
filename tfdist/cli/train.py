"""The command-line trainer: `python -m tfdist.train` (console script `tfdist-train`).

A thin layer over the Python API: the flags (`tfdist.cli.train_flags`) become one frozen
`JobConfig`; then, in this order, the process either launches a local cluster (several
workers asked for and no TF_CONFIG; each task's command is written from the config),
runs a parameter-server task's server (TF_CONFIG says this task is a ps or worker of a
`parameter_server` cluster), or runs the job (`tfdist.cli.job`: the same `Trainer` as
`tfdist.fit`) and prints its summary line. User mistakes end with one line on stderr
and exit code 2. TensorFlow is imported only when this process trains or serves.
`USAGE` is what `--help` prints (absl prints the main module's docstring; `main` sets it).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

_STARTED_AT = time.time()

from absl import app, flags  # noqa: E402

from tfdist.cli.train_flags import config_from_flags, flags_for  # noqa: E402
from tfdist.config import ConfigError, JobConfig  # noqa: E402
from tfdist.distribute.cluster import read_tf_config  # noqa: E402


def _plan_data_service(config: JobConfig):
    """The tf.data service tasks a local launch starts, or None (none asked, or one given)."""
    if not config.data.data_service or config.data.data_service_address:
        return None
    from launch.data_service import plan_data_service

    return plan_data_service(
        command=[sys.executable, "-m", "tfdist.data_service"],
        num_workers=config.data.data_service_workers,
        base_env=dict(os.environ),
    )


def task_command(config: JobConfig, service, num_workers: int) -> list[str]:
    """A launched task's command, written from `config`: this attempt's worker count, the
    tf.data service's address, and none of the launcher's own settings (restarts and
    resizing are the launcher's; a task has TF_CONFIG)."""
    launch = dataclasses.replace(
        config.launch, num_workers=num_workers, min_workers=None, max_restarts=0
    )
    data = config.data
    if service is not None:
        data = dataclasses.replace(data, data_service_address=service.address)
    task = dataclasses.replace(config, launch=launch, data=data)
    return [sys.executable, "-m", "tfdist.train", *flags_for(task)]


def _launch_local_cluster(config: JobConfig) -> int:
    from launch import LaunchSpec, run_launch, tfdist_server_command, visible_gpu_ids

    gpu_ids = visible_gpu_ids(environ=os.environ)
    launch = config.launch
    strategy = launch.launch_strategy()

    def spec(num_workers: int = launch.num_workers or 1) -> LaunchSpec:
        # Planned anew for each attempt: fresh service ports too.
        service = _plan_data_service(config)
        return LaunchSpec(
            strategy=strategy,
            command=task_command(config, service, num_workers),
            server_command=tfdist_server_command(),
            num_workers=num_workers,
            num_ps=(launch.num_ps or 0) if strategy == "parameter_server" else 0,
            base_env=dict(os.environ),
            gpus_per_worker=launch.gpus_per_worker,
            gpu_ids=gpu_ids,
            isolate_network=launch.isolate_network,
            extra_tasks=service.launches if service else (),
        )

    if (launch.max_restarts or launch.min_workers) and not config.loop.checkpoint.model_dir:
        what = (
            f"--max_restarts={launch.max_restarts}"
            if launch.max_restarts
            else f"--min_workers={launch.min_workers}"
        )
        print(
            f"tfdist.train: warning: {what} without --model_dir restarts from step 0: "
            "nothing is checkpointed.",
            flush=True,
        )
    report = run_launch(
        spec,
        max_restarts=launch.max_restarts,
        min_workers=launch.min_workers,
        resize=lambda _, num_workers: spec(num_workers),
        output=_task_output(config),
        announce=lambda line: print(f"tfdist.train: {line}", flush=True),
        quiet_peers=not config.output.verbose,  # Survivors' errors after a failure: logs only.
    )
    if report.exit_code:
        print(report.attempts[-1].summary(), file=sys.stderr, flush=True)
        if report.restarts:
            print(report.summary(), file=sys.stderr, flush=True)
    return report.exit_code


def run() -> int:
    """Runs the trainer for already-parsed flags."""
    config = config_from_flags()
    cluster = read_tf_config()
    config.launch.check_cluster(cluster)  # With TF_CONFIG, the cluster's shape comes from it.
    if config.launch.needs_local_cluster(cluster):
        return _launch_local_cluster(config)
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


def _in_flags(error: BaseException) -> str:
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


def _task_output(config: JobConfig):
    """Where a launched cluster's output goes: stdout, less TensorFlow's start-up noise
    (`launch.noise`) unless --verbose."""
    from launch.noise import QuietOutput

    return None if config.output.verbose else QuietOutput(lambda: sys.stdout)


def _ignore_known_warnings() -> None:
    """Filters the tf.data options UserWarning TensorFlow raises when the trainer iterates a
    dataset inside a traced function (harmless, once per trace); --verbose keeps it."""
    import warnings

    from launch.noise import TF_DATA_OPTIONS_WARNING

    warnings.filterwarnings("ignore", message=TF_DATA_OPTIONS_WARNING, category=UserWarning)


def _main() -> int:
    from absl import logging

    from launch import LaunchError

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines drown the epochs.
    if not flags.FLAGS["verbose"].value:
        _ignore_known_warnings()

    try:
        return run()
    except (ConfigError, LaunchError) as error:
        return _user_error_exit(error)
    except SystemExit as error:  # Preempted (SIGTERM or Ctrl-C): saved; one line, 128 + it.
        if getattr(error, "signum", None) is None:  # Imported lazily: TensorFlow's.
            raise
        print(f"tfdist.train: {_in_flags(error)}", file=sys.stderr, flush=True)
        return int(error.code)  # type: ignore[arg-type]
    except Exception as error:  # The trainer's own stops: one line, not a traceback.
        from tfdist.training.checkpoints import CheckpointWriteError
        from tfdist.training.history import TrainingDiverged

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

The trainer's own flags are those --helpfull lists under tfdist.cli.train_flags.
"""


def main(argv=None) -> None:
    """Console-script entry: parses flags (`--flagfile` included) and exits with the status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Before TensorFlow loads; the CLI only.
    main_module = sys.modules.get("__main__")
    if main_module is not None:  # absl's --help prints the main module's docstring.
        main_module.__doc__ = USAGE
    app.run(
        lambda parsed: sys.exit(_main()),
        argv=argv,
        flags_parser=_parse_flags,
    )
