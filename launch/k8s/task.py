"""One pod's start: `python -m launch.k8s.task [FLAGS] -- COMMAND`.

Every pod of the Indexed Jobs of `python -m launch k8s --kind=job` runs this.
It computes the pod's TF_CONFIG from JOB_COMPLETION_INDEX (set by Kubernetes
in Indexed Jobs), its Job's role (`--task_type`) and the pods' DNS names
(`--address_template`, see `launch.k8s.job.pod_task_spec`), and replaces
itself with COMMAND (`os.execvpe`, with a new env dict). The ps and worker pods
of a "parameter_server" cluster are servers: this process runs them as a
child and exits 0 once the chief has finished (`launch.servers`). Overriding
`--address_template` (e.g. "localhost:{port}" with `--port_base`) runs the
same entry point as local processes. Besides `launch.__main__` and
`launch.slurm.task`, this is the one module of `launch` that reads
`os.environ`; nothing imports it.
"""

import argparse
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from launch.command import split_command
from launch.errors import LaunchError
from launch.k8s.job import DEFAULT_PORT, pod_task_spec
from launch.servers import run_task
from launch.tf_config import tf_config_json

_PROG = "launch.k8s.task"
_INDEX_VAR = "JOB_COMPLETION_INDEX"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise LaunchError(f"{message} (see --help).")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=f"python -m {_PROG}",
        usage="%(prog)s --strategy=STRATEGY --task_type=ROLE --num_workers=N [--num_ps=N] "
        "--address_template=T -- COMMAND...",
        description="Inside a pod of an Indexed Job: computes this pod's TF_CONFIG from "
        f"{_INDEX_VAR} and the pods' DNS names, and runs COMMAND with it.",
    )
    parser.add_argument(
        "--strategy",
        required=True,
        choices=("multi_worker", "parameter_server"),
        help="Cluster layout; the same in every pod.",
    )
    parser.add_argument(
        "--task_type",
        required=True,
        choices=("chief", "worker", "ps"),
        help="This pod's role: the role of its Job.",
    )
    parser.add_argument("--num_workers", type=int, required=True, help="Worker pods.")
    parser.add_argument("--num_ps", type=int, default=0, help="ps pods (parameter_server).")
    parser.add_argument(
        "--address_template",
        required=True,
        help="Each task's host:port with {task_type}, {index}, {rank} and {port} "
        "(--port_base + rank), e.g. NAME-{task_type}-{index}.NAME:2222 in Kubernetes or "
        "localhost:{port} to run the pods as local processes.",
    )
    parser.add_argument(
        "--port_base",
        type=int,
        default=DEFAULT_PORT,
        help="The {port} of rank 0 in --address_template; ranks count up.",
    )
    return parser


def _index(environ: Mapping[str, str]) -> int:
    value = environ.get(_INDEX_VAR, "").strip()
    if not value.isdigit():
        raise LaunchError(
            f"{_INDEX_VAR} ({environ.get(_INDEX_VAR)!r}) must be an integer of at least 0, as "
            "Kubernetes sets it in an Indexed Job's pods; run this from the Jobs of "
            "`python -m launch k8s --kind=job`."
        )
    return int(value)


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
                f"No command to run: put it after '--', e.g. python -m {_PROG} ... -- "
                "python -m tfdist.train --strategy=multi_worker."
            )
        index = _index(os.environ)
        cluster = pod_task_spec(
            strategy=args.strategy,
            task_type=args.task_type,
            index=index,
            num_workers=args.num_workers,
            num_ps=args.num_ps,
            template=args.address_template,
            port_base=args.port_base,
        )
    except LaunchError as error:
        print(f"{_PROG}: error: {error}", file=sys.stderr, flush=True)
        return 2
    env = dict(os.environ, TF_CONFIG=tf_config_json(cluster, args.task_type, index))
    env.setdefault("PYTHONUNBUFFERED", "1")
    host = os.environ.get("HOSTNAME") or socket.gethostname()
    print(
        f"{_PROG}: {_INDEX_VAR} {index} on {host} is {args.task_type}:{index} of a "
        f"{args.strategy} cluster at {cluster.jobs[args.task_type][index]}.",
        file=sys.stderr,
        flush=True,
    )
    serves = args.strategy == "parameter_server" and args.task_type in ("ps", "worker")
    return run_task(command, env, chief=cluster.jobs["chief"][0] if serves else None, prog=_PROG)


if __name__ == "__main__":
    sys.exit(main())
