"""One Slurm task's start: `python -m launch.slurm.task [FLAGS] -- COMMAND`.

srun runs this in every task of the script from `python -m launch slurm`. It
computes the task's TF_CONFIG (`launch.slurm.sbatch`) and CUDA_VISIBLE_DEVICES
(`launch.gpus`) from the SLURM_* variables, and replaces itself with COMMAND
(`os.execvpe`, with a new env dict). One exception: the ps and worker tasks of
a "parameter_server" cluster are servers that never exit by themselves, so
this process runs them as a child and stops them, exiting 0, once the chief's
port has been open and then stays closed (the chief finished;
`launch.servers.serve_until_chief_exits`); the srun step
then ends with the chief. A chief that fails ends the step through
`srun --kill-on-bad-exit=1`. Besides `launch.__main__`, this is the one module
of `launch` that reads `os.environ`; nothing imports it.
"""

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from launch.command import split_command
from launch.errors import LaunchError
from launch.gpus import assign_gpus, check_gpus_per_worker, visible_gpu_ids
from launch.servers import port_open, run_task, serve_until_chief_exits  # noqa: F401 (the helpers' API)
from launch.slurm.sbatch import DEFAULT_PORT_BASE, SLURM_STRATEGIES, SlurmTaskSpec, slurm_task_spec

_PROG = "launch.slurm.task"


def task_env(
    spec: SlurmTaskSpec,
    *,
    strategy: str,
    environ: Mapping[str, str],
    gpus_per_worker: int = 0,
    gpu_ids: Sequence[str] | None = None,
) -> dict[str, str]:
    """Returns the environment of the task's command: `environ` plus TF_CONFIG and GPUs.

    TF_CONFIG is removed for "mirrored", which runs without a cluster.
    CUDA_VISIBLE_DEVICES is set as `launch.gpus.assign_gpus` divides
    `gpu_ids` among the tasks of this node.
    """
    env = dict(environ)
    env.pop("TF_CONFIG", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    tf_config = spec.tf_config()
    if tf_config is None or spec.task_type is None:
        return env
    env["TF_CONFIG"] = tf_config
    devices = assign_gpus(
        strategy=strategy, tasks=spec.node_tasks, gpu_ids=gpu_ids, gpus_per_worker=gpus_per_worker
    )
    task = (spec.task_type, spec.index)
    if task in devices:
        env["CUDA_VISIBLE_DEVICES"] = devices[task]
    return env


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise LaunchError(f"{message} (see --help).")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=f"python -m {_PROG}",
        usage="%(prog)s --strategy=STRATEGY [--num_ps=N] [--port_base=P] -- COMMAND...",
        description="Inside a Slurm step: computes this task's TF_CONFIG from the SLURM_* "
        "variables and runs COMMAND with it.",
    )
    parser.add_argument(
        "--strategy",
        required=True,
        choices=SLURM_STRATEGIES,
        help="Cluster layout; must be the same in every task.",
    )
    parser.add_argument(
        "--num_ps",
        type=int,
        default=0,
        help="ps tasks of --strategy=parameter_server (tasks 1..num_ps).",
    )
    parser.add_argument(
        "--port_base",
        type=int,
        default=DEFAULT_PORT_BASE,
        help="Port of each node's first task; the next tasks count up.",
    )
    parser.add_argument(
        "--gpus_per_worker",
        type=int,
        default=0,
        help="GPUs of each worker task from its node's GPUs; 0: all of them.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Execs the command (does not return) or returns an exit code.

    Args:
        argv: The arguments after the program name; defaults to `sys.argv[1:]`.
    """
    flags, command = split_command(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(flags)
        if not command:
            raise LaunchError(
                f"No command to run: put it after '--', e.g. python -m {_PROG} "
                "--strategy=multi_worker -- python -m tfdist.train --strategy=multi_worker."
            )
        check_gpus_per_worker(args.gpus_per_worker)
        spec = slurm_task_spec(
            strategy=args.strategy, environ=os.environ, num_ps=args.num_ps, port_base=args.port_base
        )
        needs_ids = args.gpus_per_worker or args.strategy == "parameter_server"
        env = task_env(
            spec,
            strategy=args.strategy,
            environ=os.environ,
            gpus_per_worker=args.gpus_per_worker,
            gpu_ids=visible_gpu_ids(environ=os.environ) if needs_ids else None,
        )
    except LaunchError as error:
        print(f"{_PROG}: error: {error}", file=sys.stderr, flush=True)
        return 2
    name = "the mirrored task" if spec.cluster is None else f"{spec.task_type}:{spec.index}"
    print(
        f"{_PROG}: SLURM_PROCID {os.environ['SLURM_PROCID']} on {spec.host} is {name} of "
        f"a {args.strategy} cluster.",
        file=sys.stderr,
        flush=True,
    )
    chief = None
    if spec.cluster is not None and spec.task_type in ("ps", "worker"):
        serves = args.strategy == "parameter_server"
        chief = spec.cluster.jobs["chief"][0] if serves else None
    return run_task(command, env, chief=chief, prog=_PROG)


if __name__ == "__main__":
    sys.exit(main())
