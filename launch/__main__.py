"""Command line: run your own command in the tasks of a TensorFlow cluster.

    python -m launch --strategy=multi_worker --num_workers=2 -- python train.py --steps=10
    python -m launch hosts --strategy=multi_worker --hosts=a:2222,b:2222 -- COMMAND
    python -m launch slurm --strategy=multi_worker --nodes=2 --tasks_per_node=1 -- COMMAND
    python -m launch k8s --strategy=multi_worker --image=IMAGE --num_workers=2 -- COMMAND

Without a sub-command the cluster runs on this machine. `hosts` prints (or
writes, or runs here) each task of a multi-host cluster, `slurm` writes an
sbatch script and `k8s` a Kubeflow TFJob manifest; each is an argparse
sub-parser of the one parser, and COMMAND is what follows `--`
(`launch.command.split_command`). This module only turns flags into a
`launch.plan.LaunchSpec` run by `launch.launcher.run_launch`, or calls of
`launch.hosts`, `launch.slurm.sbatch` and `launch.k8s.tfjob`; it is the one place
that reads `os.environ` (as the tasks' base environment). Nothing imports it.
"""

import argparse
import dataclasses
import os
import pathlib
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from launch import hosts as hosts_lib
from launch.command import split_command
from launch.errors import LaunchError
from launch.gpus import visible_gpu_ids
from launch.k8s.job import DEFAULT_PORT as DEFAULT_K8S_PORT
from launch.k8s.job import job_manifests, job_yaml
from launch.k8s.pods import K8S_STRATEGIES
from launch.k8s.tfjob import tfjob_manifest, tfjob_yaml
from launch.launcher import run_launch
from launch.plan import LaunchSpec, tfdist_server_command
from launch.result import RestartReport
from launch.slurm.sbatch import DEFAULT_PORT_BASE, SLURM_STRATEGIES, sbatch_script, task_python
from launch.tf_config import CLUSTER_STRATEGIES, ClusterSpec


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


_SUBCOMMAND = "SUB-COMMAND"  # How help and errors name the sub-command's place.


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        if message.startswith(f"argument {_SUBCOMMAND}: invalid choice"):
            message += "; your COMMAND goes after '--'"  # A command given without '--'.
        raise _UsageError(f"{message} (see --help).")


def _int_of_at_least(least: int) -> Callable[[str], int]:
    """An argparse type: a plain decimal integer (ASCII digits) of at least `least`."""

    def parse(text: str) -> int:
        if not (text.isascii() and text.isdigit()) or int(text) < least:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer of at least {least}")
        return int(text)

    return parse


_non_negative_int = _int_of_at_least(0)


_positive_int = _int_of_at_least(1)


def _add_gpus_per_worker(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--gpus_per_worker",
        type=_non_negative_int,
        default=0,
        help=f"GPUs of each worker task, set as its CUDA_VISIBLE_DEVICES ({what}); ps "
        "tasks and a parameter_server chief run on the CPU. 0: workers keep all GPUs.",
    )


def _parser() -> argparse.ArgumentParser:
    """`python -m launch`: the local launcher's flags, and a sub-parser per sub-command."""
    parser = _Parser(
        prog="python -m launch",
        usage="%(prog)s --strategy=STRATEGY --num_workers=N [--num_ps=N] "
        "[--servers=tfdist|command] [...] -- COMMAND...",
        description="Runs COMMAND in the tasks of a TensorFlow cluster on this machine (every "
        "task under multi_worker; the chief under parameter_server, see "
        "--servers), each with its own TF_CONFIG, and stops them all when one "
        "fails.",
        epilog="Beyond this machine: python -m launch hosts|slurm|k8s --help.",
    )
    _add_local_flags(parser)
    subcommands = parser.add_subparsers(
        dest="subcommand", title="sub-commands", metavar=_SUBCOMMAND
    )
    for name, subcommand in _SUBCOMMANDS.items():
        child = subcommands.add_parser(
            name,
            prog=f"python -m launch {name}",
            usage=f"%(prog)s {subcommand.usage} -- COMMAND...",
            description=subcommand.description,
            help=subcommand.help,
        )
        subcommand.add_flags(child)
    return parser


# Required for a local launch; checked after parsing, since a sub-command has its own.
_LOCAL_REQUIRED = ("strategy", "num_workers")


def _add_local_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strategy",
        help=f"Cluster layout: one of {', '.join(CLUSTER_STRATEGIES)}. 'parameter_server' "
        "adds a chief and --num_ps ps tasks; its workers and ps tasks are servers "
        "(see --servers), stopped when the chief exits.",
    )
    parser.add_argument("--num_workers", type=int, help="Number of worker tasks; at least 1.")
    parser.add_argument(
        "--num_ps",
        type=int,
        default=0,
        help="Number of ps tasks: 0 for --strategy=multi_worker, at least 1 "
        "for --strategy=parameter_server.",
    )
    parser.add_argument(
        "--servers",
        choices=("tfdist", "command"),
        default="tfdist",
        help="What the ps and worker tasks of --strategy=parameter_server run. 'tfdist' "
        "(default): tfdist's server (python -m tfdist.server, with the launcher's "
        "Python), so COMMAND runs on the chief only, e.g. a script that trains under "
        "tfdist.make_strategy('parameter_server', cluster=tfdist.read_tf_config()). "
        "'command': COMMAND runs on every task and must serve on ps and worker tasks "
        "itself, as python -m tfdist.train does. Not used by multi_worker.",
    )
    parser.add_argument(
        "--host", default="localhost", help="Host name or IPv4 address in every task's address."
    )
    parser.add_argument(
        "--stop_timeout",
        type=_positive_seconds,
        default=10.0,
        help="Seconds a task gets to exit after SIGTERM before SIGKILL.",
    )
    parser.add_argument(
        "--max_restarts",
        type=_non_negative_int,
        default=0,
        help="When a task fails, stop them all and start the cluster again (fresh ports, a "
        "fresh TF_CONFIG), at most this many times; COMMAND resumes from its own "
        "checkpoints. A parameter_server worker that dies is restarted in place instead "
        "(same port, at most this many times each) while the chief goes on. 0: the launch "
        "fails at the first failure.",
    )
    parser.add_argument(
        "--min_workers",
        type=_positive_int,
        default=None,
        help="--strategy=multi_worker only: when a worker fails again after --max_restarts "
        "restarts, go on without it while at least this many workers remain (the "
        "cluster is planned again with one worker fewer and gets --max_restarts "
        "restarts of its own). Unset: the launch fails then.",
    )
    parser.add_argument(
        "--isolate_network",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Run every task in one private network namespace (loopback "
        "only; needs root and iproute2) so TensorFlow's unauthenticated "
        "gRPC ports are unreachable from other machines. Only with "
        "--host=localhost.",
    )
    _add_gpus_per_worker(parser, "from nvidia-smi -L, or CUDA_VISIBLE_DEVICES when set")
    _add_output_flags(parser)


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log_dir",
        metavar="DIR",
        help="Where every task's full output goes, one file per task and attempt "
        "(DIR/attempt-1/worker-1.log), unfiltered. Default: a fresh directory under the "
        "system's temp directory. The launcher's line about a failed attempt names it.",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="Print every task's output until it is stopped. By default, once a task "
        "fails, the other tasks' output (the errors its failure causes them) goes to "
        "--log_dir only, and so do their errors about a worker restarted in place.",
    )


def _announce(line: str) -> None:
    print(f"launch: {line}", file=sys.stderr, flush=True)


def _finish(report: RestartReport) -> int:
    """Prints the failed attempt's summary; returns the launch's exit code."""
    if report.exit_code:
        print(report.attempts[-1].summary(), file=sys.stderr, flush=True)
        if report.restarts:
            print(report.summary(), file=sys.stderr, flush=True)
    return report.exit_code


def local_spec(
    args: argparse.Namespace, command: Sequence[str], environ: Mapping[str, str]
) -> LaunchSpec:
    """The `LaunchSpec` of a local launch: parsed flags, COMMAND and the base environment."""
    servers = tfdist_server_command() if args.servers == "tfdist" else None
    return LaunchSpec(
        strategy=args.strategy,
        command=command,
        server_command=servers,
        num_workers=args.num_workers,
        num_ps=args.num_ps,
        host=args.host,
        base_env=dict(environ),
        gpus_per_worker=args.gpus_per_worker,
        gpu_ids=visible_gpu_ids(environ=environ),
        isolate_network=args.isolate_network,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the launcher; returns the exit code (2 for bad arguments).

    Args:
        argv: The arguments after the program name; defaults to `sys.argv[1:]`.
    """
    flags, command = split_command(sys.argv[1:] if argv is None else argv)
    try:
        parser = _parser()
        args = parser.parse_args(flags)
        name = args.subcommand
        if name is not None and flags[0] != name:
            parser.error(
                f"the sub-command {name!r} must come first: its flags follow it, e.g. "
                f"python -m launch {name} --strategy=multi_worker ... -- COMMAND"
            )
        if name is None:
            return _run_local(parser, args, command)
        if not command:
            raise LaunchError(
                f"No command to launch: put it after '--', e.g. python -m launch {name} "
                "--strategy=multi_worker ... -- python -m tfdist.train --strategy=multi_worker."
            )
        return _SUBCOMMANDS[name].run(args, command)
    except (LaunchError, _UsageError) as error:
        print(f"launch: error: {error}", file=sys.stderr)
        return 2


def _run_local(
    parser: argparse.ArgumentParser, args: argparse.Namespace, command: list[str]
) -> int:
    missing = [f"--{name}" for name in _LOCAL_REQUIRED if getattr(args, name) is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    if not command:
        raise LaunchError(
            "No command to launch: put it after '--', e.g. python -m launch "
            "--strategy=multi_worker --num_workers=2 -- python train.py."
        )
    report = run_launch(
        local_spec(args, command, os.environ),
        announce=_announce,
        stop_timeout=args.stop_timeout,
        max_restarts=args.max_restarts,
        min_workers=args.min_workers,
        log_dir=args.log_dir,
        quiet_peers=not args.verbose,
    )
    return _finish(report)


def _add_hosts_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strategy", required=True, choices=CLUSTER_STRATEGIES, help="Cluster layout."
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--hosts",
        help="Task addresses host:port,...; under parameter_server "
        "the first is the chief, the next --num_ps the ps tasks.",
    )
    where.add_argument(
        "--cluster_spec",
        help='JSON file {"chief": [...], "worker": [...], "ps": [...]} of host:port addresses.',
    )
    parser.add_argument(
        "--num_ps",
        type=_non_negative_int,
        default=0,
        help="ps tasks taken from --hosts (parameter_server).",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--write_env",
        metavar="DIR",
        help="Write one env file per task (e.g. worker-0.env) into DIR.",
    )
    mode.add_argument(
        "--this_host",
        metavar="NAME",
        help="Run the tasks whose address is on host NAME here, as the "
        "local launcher does, until they finish (or Ctrl-C).",
    )
    parser.add_argument(
        "--stop_timeout",
        type=_positive_seconds,
        default=10.0,
        help="With --this_host: seconds a task gets after SIGTERM.",
    )
    _add_gpus_per_worker(parser, "GPUs 0, 1, ... of each host")


def _add_slurm_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strategy",
        required=True,
        choices=SLURM_STRATEGIES,
        help="Cluster layout; mirrored is one task on one node.",
    )
    parser.add_argument("--nodes", type=int, required=True, help="Nodes to allocate.")
    parser.add_argument("--tasks_per_node", type=int, required=True, help="Tasks on each node.")
    parser.add_argument(
        "--num_ps",
        type=_non_negative_int,
        default=0,
        help="ps tasks (parameter_server): tasks 1..num_ps; task 0 is the "
        "chief, the rest are workers.",
    )
    parser.add_argument("--partition", help="Slurm partition.")
    parser.add_argument("--time", help="Time limit, e.g. 01:00:00.")
    parser.add_argument(
        "--gpus_per_node",
        type=_non_negative_int,
        default=0,
        help="GPUs to allocate per node (#SBATCH --gpus-per-node).",
    )
    parser.add_argument("--job_name", default="tfdist", help="Slurm job name.")
    parser.add_argument(
        "--port_base",
        type=int,
        default=DEFAULT_PORT_BASE,
        help="Port of each node's first task; the next tasks count up.",
    )
    parser.add_argument("--output", help="Write the script to this file instead of stdout.")
    parser.add_argument(
        "--python",
        metavar="PATH",
        help="Absolute path of the Python on the nodes that runs the task helper (and a "
        "command starting with python). Default: the command's own interpreter, a "
        "bare python/python3 resolved on PATH now, else this interpreter.",
    )
    _add_gpus_per_worker(parser, "from the GPUs Slurm gives its node; needs --gpus_per_node")


def _add_k8s_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strategy",
        required=True,
        choices=K8S_STRATEGIES,
        help="Cluster layout; mirrored is one pod.",
    )
    parser.add_argument("--image", required=True, help="Container image with tfdist.")
    parser.add_argument("--num_workers", type=int, default=1, help="Worker pods.")
    parser.add_argument(
        "--num_ps",
        type=_non_negative_int,
        default=0,
        help="PS pods (parameter_server, which also gets one Chief pod).",
    )
    parser.add_argument(
        "--gpus_per_worker",
        type=_non_negative_int,
        default=0,
        help="nvidia.com/gpu limit of each Worker pod.",
    )
    parser.add_argument("--cpu", help="CPU request and limit of each pod, e.g. 4.")
    parser.add_argument("--memory", help="Memory request and limit of each pod, e.g. 8Gi.")
    parser.add_argument(
        "--name",
        default="tfdist",
        help="TFJob name; with --kind=job the Service's name and the Jobs' "
        "prefix (NAME-worker, NAME-chief, NAME-ps).",
    )
    parser.add_argument("--namespace", help="Kubernetes namespace.")
    parser.add_argument(
        "--kind",
        choices=("tfjob", "job"),
        default="tfjob",
        help="tfjob: a Kubeflow TFJob (needs the training operator); job: "
        "Indexed Jobs and a headless Service (plain Kubernetes).",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_K8S_PORT,
        help="With --kind=job: the port of every pod's TensorFlow server.",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="An environment variable of every pod; repeat for more.",
    )
    parser.add_argument("--output", help="Write the manifest to this file instead of stdout.")


def _emit(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        pathlib.Path(output).write_text(text)
    except OSError as error:
        raise LaunchError(
            f"Cannot write --output={output} ({error}); pass a writable file path."
        ) from error
    print(f"launch: wrote {output}", file=sys.stderr)


def _hosts_cluster(args: argparse.Namespace) -> ClusterSpec:
    if args.cluster_spec is None:
        return hosts_lib.plan_hosts_cluster(
            strategy=args.strategy, num_ps=args.num_ps, hosts=hosts_lib.parse_hosts(args.hosts)
        )
    if args.num_ps:
        raise LaunchError(
            f"--num_ps ({args.num_ps}) is only used with --hosts; a "
            "--cluster_spec file lists its ps tasks itself."
        )
    try:
        text = pathlib.Path(args.cluster_spec).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise LaunchError(
            f"Cannot read --cluster_spec={args.cluster_spec} ({error}); pass "
            "a JSON file of job name to host:port lists."
        ) from error
    return hosts_lib.read_cluster_spec(text, source=args.cluster_spec, strategy=args.strategy)


def _run_hosts(args: argparse.Namespace, command: list[str]) -> int:
    cluster = _hosts_cluster(args)
    print(f"launch: {hosts_lib.open_ports_warning(cluster)}", file=sys.stderr, flush=True)
    if args.write_env is not None:
        directory = pathlib.Path(args.write_env)
        files = hosts_lib.env_files(
            cluster, strategy=args.strategy, command=command, gpus_per_worker=args.gpus_per_worker
        )
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for name, text in files.items():
                (directory / name).write_text(text)
        except OSError as error:
            raise LaunchError(
                f"Cannot write env files into --write_env={directory} "
                f"({error}); pass a writable directory."
            ) from error
        print(
            f"launch: wrote {', '.join(str(directory / name) for name in files)}", file=sys.stderr
        )
        return 0
    if args.this_host is None:
        for line in hosts_lib.task_lines(
            cluster, strategy=args.strategy, command=command, gpus_per_worker=args.gpus_per_worker
        ):
            print(line)
        return 0
    tasks = hosts_lib.tasks_on_host(cluster, args.this_host)
    if not tasks:
        raise LaunchError(
            f"No task of the cluster has host {args.this_host!r}; pass --this_host= one of: "
            f"{', '.join(hosts_lib.cluster_hosts(cluster))}."
        )
    spec = LaunchSpec(
        strategy=args.strategy,
        command=command,
        cluster=cluster,
        tasks=tasks,
        base_env=dict(os.environ),
        gpus_per_worker=args.gpus_per_worker,
        gpu_ids=visible_gpu_ids(environ=os.environ),
        isolate_network=False,
    )
    return _finish(run_launch(spec, announce=_announce, stop_timeout=args.stop_timeout))


def _run_slurm(args: argparse.Namespace, command: list[str]) -> int:
    _emit(
        sbatch_script(
            strategy=args.strategy,
            nodes=args.nodes,
            tasks_per_node=args.tasks_per_node,
            command=command,
            num_ps=args.num_ps,
            partition=args.partition,
            time=args.time,
            gpus_per_node=args.gpus_per_node,
            gpus_per_worker=args.gpus_per_worker,
            job_name=args.job_name,
            port_base=args.port_base,
            python=task_python(
                command, python=args.python, which=shutil.which, default=sys.executable
            ),
        ),
        args.output,
    )
    return 0


def _run_k8s(args: argparse.Namespace, command: list[str]) -> int:
    env: dict[str, str] = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            raise LaunchError(
                f"--env={item} must be NAME=VALUE, e.g. --env=TF_CPP_MIN_LOG_LEVEL=2."
            )
        env[key] = value
    common: dict[str, Any] = dict(
        name=args.name,
        strategy=args.strategy,
        image=args.image,
        command=command,
        num_workers=args.num_workers,
        num_ps=args.num_ps,
        gpus_per_worker=args.gpus_per_worker,
        cpu=args.cpu,
        memory=args.memory,
        namespace=args.namespace,
        env=env,
    )
    if args.kind == "job":
        manifests = job_manifests(port=args.port, **common)
        _emit(job_yaml(manifests, strategy=args.strategy), args.output)
    else:
        if args.port != DEFAULT_K8S_PORT:
            raise LaunchError(
                f"--port ({args.port}) is only used with --kind=job; the "
                "training operator picks a TFJob's ports."
            )
        _emit(tfjob_yaml(tfjob_manifest(**common), strategy=args.strategy), args.output)
    return 0


@dataclasses.dataclass(frozen=True)
class _Subcommand:
    """A sub-command: its usage (less the program and COMMAND), help, flags and runner."""

    usage: str
    help: str
    description: str
    add_flags: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, list[str]], int]


_SUBCOMMANDS = {
    "hosts": _Subcommand(
        usage="--strategy=STRATEGY (--hosts=H:P,... [--num_ps=N] | --cluster_spec=FILE) "
        "[--write_env=DIR | --this_host=NAME]",
        help="a cluster over several hosts: each task's line, env files, or this host's tasks",
        description="Plans a cluster over several hosts and prints, for each task, the line "
        "to run on its host (TF_CONFIG='...' COMMAND); or writes one env file per task; or "
        "runs this host's tasks here.",
        add_flags=_add_hosts_flags,
        run=_run_hosts,
    ),
    "slurm": _Subcommand(
        usage="--strategy=STRATEGY --nodes=N --tasks_per_node=K [--num_ps=N] "
        "[--partition=P] [--time=T] [--gpus_per_node=G] [--output=FILE]",
        help="an sbatch script whose tasks build their TF_CONFIG from SLURM_* variables",
        description="Prints (or writes) an sbatch script whose srun runs COMMAND in every "
        "task, each with the TF_CONFIG `python -m launch.slurm.task` builds from SLURM_* "
        "variables.",
        add_flags=_add_slurm_flags,
        run=_run_slurm,
    ),
    "k8s": _Subcommand(
        usage="--strategy=STRATEGY --image=IMAGE [--kind=tfjob|job] [--num_workers=N] "
        "[--num_ps=N] [--gpus_per_worker=G] [--env=NAME=VALUE] [--output=FILE]",
        help="a Kubeflow TFJob manifest, or Indexed Jobs and a headless Service",
        description="Prints (or writes) a Kubeflow TFJob manifest whose pods run COMMAND (the "
        "training operator gives each pod its TF_CONFIG), or with --kind=job Kubernetes' own "
        "Indexed Jobs and a headless Service, whose pods build their TF_CONFIG themselves.",
        add_flags=_add_k8s_flags,
        run=_run_k8s,
    ),
}


if __name__ == "__main__":
    sys.exit(main())
