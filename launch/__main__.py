"""Command line: run your own command as every task of a local TensorFlow cluster.

    python -m launch --strategy=multi_worker --num_workers=2 -- python train.py --steps=10

This module only turns flags into calls of `launch.tf_config` and
`launch.local`; it is the one place that reads `os.environ` (as the tasks' base
environment). Nothing imports it.
"""

import argparse
import os
import sys
from typing import Sequence

from launch.errors import LaunchError
from launch.local import THREAD_ENV_VARS, plan_local_launch, run_local
from launch.tf_config import LOCAL_STRATEGIES, plan_local_cluster

class _UsageError(Exception):
    """A flag could not be parsed."""


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(f"{message} (see --help).")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m launch",
        usage="%(prog)s --strategy=STRATEGY --num_workers=N [--num_ps=N] [...] -- COMMAND...",
        description="Runs COMMAND as every task of a TensorFlow cluster on this machine, "
                    "each with its own TF_CONFIG, and stops them all when one fails.")
    parser.add_argument(
        "--strategy", required=True,
        help=f"Cluster layout: one of {', '.join(LOCAL_STRATEGIES)}. 'parameter_server' "
             "adds a chief and --num_ps ps tasks; its workers and ps tasks are servers, "
             "stopped when the chief exits.")
    parser.add_argument("--num_workers", type=int, required=True,
                        help="Number of worker tasks; at least 1.")
    parser.add_argument("--num_ps", type=int, default=0,
                        help="Number of ps tasks: 0 for --strategy=multi_worker, at least 1 "
                             "for --strategy=parameter_server.")
    parser.add_argument("--host", default="localhost",
                        help="Host name or IPv4 address in every task's address.")
    parser.add_argument("--stop_timeout", type=_positive_seconds, default=10.0,
                        help="Seconds a task gets to exit after SIGTERM before SIGKILL.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the launcher; returns the exit code (2 for bad arguments).

    Args:
        argv: The arguments after the program name; defaults to `sys.argv[1:]`.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    flags, command = argv[:split], argv[split + 1:]
    try:
        args = _parser().parse_args(flags)
        if not command:
            raise LaunchError(
                "No command to launch: put it after '--', e.g. python -m launch "
                "--strategy=multi_worker --num_workers=2 -- python train.py.")
        cluster = plan_local_cluster(strategy=args.strategy, num_workers=args.num_workers,
                                     num_ps=args.num_ps, host=args.host)
        launches = plan_local_launch(cluster=cluster, strategy=args.strategy,
                                     command=command, base_env=dict(os.environ))
        lead = next(launch for launch in launches if not launch.is_server)
        addresses = [address for job in cluster.jobs.values() for address in job]
        tasks = ", ".join(f"{launch.name} at {address}"
                          for launch, address in zip(launches, addresses))
        threads = ", ".join(f"{key}={lead.env[key]}" for key in THREAD_ENV_VARS)
        print(f"launch: starting {args.strategy} cluster: {tasks}; compute tasks get "
              f"{threads}.", file=sys.stderr, flush=True)
        result = run_local(launches, stop_timeout=args.stop_timeout)
    except (LaunchError, _UsageError) as error:
        print(f"launch: error: {error}", file=sys.stderr)
        return 2
    if not result.succeeded:
        print(result.summary(), file=sys.stderr, flush=True)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
