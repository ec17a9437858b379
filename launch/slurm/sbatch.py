"""Slurm: the sbatch script of a TensorFlow job, and each task's place in it.

This module owns two pure steps. `sbatch_script` writes a batch script whose one
`srun` starts `PYTHON -m launch.slurm.task ... -- COMMAND` in every task, PYTHON
being the command's own interpreter as `task_python` finds it when the script is
written (not whatever `python` comes first on a node's PATH). Inside
a task, `slurm_task_spec` reads the SLURM_* variables srun sets (a mapping
passed in; never `os.environ` itself) and returns the cluster and this task's
role in it. Expanding Slurm's compressed lists is `launch.slurm.hostlist`'s job;
executing the command is `launch.slurm.task`'s.

Layout: tasks are numbered by SLURM_PROCID, filling node after node
(`srun --distribution=block`). Task r listens on its node at port
`port_base + SLURM_LOCALID`. Under "multi_worker" every task is a worker
(worker 0 acts as chief); under "parameter_server" task 0 is the chief, the
next `num_ps` tasks are the ps tasks and the rest are workers; "mirrored" is
one task on one node, which gets no TF_CONFIG.
"""

import dataclasses
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence

from launch.command import check_command
from launch.errors import LaunchError
from launch.gpus import check_gpus_per_worker
from launch.slurm.hostlist import expand_hostlist, expand_tasks_per_node
from launch.tf_config import ClusterSpec, tf_config_json

SLURM_STRATEGIES = ("mirrored", "multi_worker", "parameter_server")
DEFAULT_PORT_BASE = 23456

_MAX_PORT = 65535
_TIME = re.compile(r"\d+|\d+:\d\d|\d+:\d\d:\d\d|\d+-\d+|\d+-\d+:\d\d|\d+-\d+:\d\d:\d\d")
_SAFE_WORD = re.compile(r"[A-Za-z0-9_.,:@%+=/-]+")
_PYTHON_NAME = re.compile(r"python(\d+(\.\d+)*)?")


@dataclasses.dataclass(frozen=True)
class SlurmTaskSpec:
    """One Slurm task's place in the TensorFlow cluster.

    Attributes:
        cluster: The whole cluster, or None for "mirrored" (one process, no TF_CONFIG).
        task_type: This task's job, e.g. "worker"; None for "mirrored".
        index: This task's index in its job.
        host: The node this task runs on.
        node_tasks: The `(task_type, index)` of every task on this node, in
            order (to divide the node's GPUs).
    """

    cluster: ClusterSpec | None
    task_type: str | None
    index: int
    host: str
    node_tasks: tuple[tuple[str, int], ...] = ()

    def tf_config(self) -> str | None:
        """Returns this task's TF_CONFIG JSON, or None for "mirrored"."""
        if self.cluster is None or self.task_type is None:
            return None
        return tf_config_json(self.cluster, self.task_type, self.index)


def check_strategy(strategy: object) -> str:
    """Returns `strategy` if it is one of `SLURM_STRATEGIES`; raises `LaunchError` otherwise."""
    if strategy not in SLURM_STRATEGIES:
        raise LaunchError(
            f"Unknown strategy {strategy!r} for a Slurm job. "
            f"Expected one of: {', '.join(SLURM_STRATEGIES)}."
        )
    return strategy


def check_layout(*, strategy: str, num_tasks: int, num_ps: int) -> None:
    """Raises `LaunchError` unless `num_tasks` tasks can form a `strategy` cluster."""
    check_strategy(strategy)
    if isinstance(num_ps, bool) or not isinstance(num_ps, int) or num_ps < 0:
        raise LaunchError(f"num_ps ({num_ps!r}) must be an integer of at least 0.")
    if strategy != "parameter_server" and num_ps:
        raise LaunchError(
            f"num_ps ({num_ps}) must be 0 for strategy {strategy!r}; pass --num_ps=0 "
            "or --strategy=parameter_server."
        )
    if strategy == "mirrored" and num_tasks != 1:
        raise LaunchError(
            f"Strategy 'mirrored' runs as one task on one node, not {num_tasks}; pass "
            "--nodes=1 --tasks_per_node=1, or --strategy=multi_worker for several nodes."
        )
    if strategy == "parameter_server" and (num_ps < 1 or num_tasks < num_ps + 2):
        raise LaunchError(
            f"Strategy 'parameter_server' with num_ps ({num_ps}) needs a chief, at least 1 "
            f"ps and at least 1 worker, so at least {max(num_ps, 1) + 2} tasks, not "
            f"{num_tasks}; pass --num_ps=1 and more --nodes or --tasks_per_node."
        )


def _role(strategy: str, rank: int, num_ps: int) -> tuple[str, int]:
    if strategy != "parameter_server":
        return "worker", rank
    if rank == 0:
        return "chief", 0
    if rank <= num_ps:
        return "ps", rank - 1
    return "worker", rank - 1 - num_ps


def _int_var(environ: Mapping[str, str], names: Sequence[str], minimum: int) -> int:
    for name in names:
        if name in environ:
            value = environ[name].strip()
            if not value.isdigit() or int(value) < minimum:
                raise LaunchError(
                    f"{name} ({environ[name]!r}) must be an integer of at least {minimum}, "
                    "as srun sets it."
                )
            return int(value)
    raise LaunchError(
        f"{names[0]} is not set; run `python -m launch.slurm.task` inside a Slurm step "
        "(srun), e.g. through the script of `python -m launch slurm`."
    )


def _first_var(environ: Mapping[str, str], names: Sequence[str]) -> tuple[str, str] | None:
    for name in names:
        if environ.get(name, "").strip():
            return name, environ[name]
    return None


def slurm_task_spec(
    *,
    strategy: str,
    environ: Mapping[str, str],
    num_ps: int = 0,
    port_base: int = DEFAULT_PORT_BASE,
) -> SlurmTaskSpec:
    """Returns this Slurm task's place in the cluster, from srun's variables.

    Reads SLURM_PROCID, SLURM_NTASKS, SLURM_STEP_NODELIST (else
    SLURM_JOB_NODELIST), SLURM_STEP_TASKS_PER_NODE (else SLURM_TASKS_PER_NODE;
    else the tasks are split evenly over the nodes) and, to check the block
    distribution, SLURM_LOCALID and SLURM_NODEID when set.

    Args:
        strategy: One of `SLURM_STRATEGIES`.
        environ: The task's environment.
        num_ps: The ps tasks of a "parameter_server" cluster.
        port_base: The port of the first task on each node.

    Raises:
        LaunchError: If a variable is missing or malformed, or the tasks do
            not fit the strategy.
    """
    check_strategy(strategy)
    rank = _int_var(environ, ("SLURM_PROCID",), 0)
    num_tasks = _int_var(environ, ("SLURM_NTASKS", "SLURM_STEP_NUM_TASKS"), 1)
    check_layout(strategy=strategy, num_tasks=num_tasks, num_ps=num_ps)
    if rank >= num_tasks:
        raise LaunchError(f"SLURM_PROCID ({rank}) must be below SLURM_NTASKS ({num_tasks}).")
    found = _first_var(environ, ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"))
    if found is None:
        raise LaunchError("SLURM_STEP_NODELIST is not set; run inside a Slurm step (srun).")
    nodes = expand_hostlist(found[1])
    counts_var = _first_var(environ, ("SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"))
    if counts_var is not None:
        counts = expand_tasks_per_node(counts_var[1])
    elif num_tasks % len(nodes) == 0:
        counts = (num_tasks // len(nodes),) * len(nodes)
    else:
        raise LaunchError(
            f"SLURM_NTASKS ({num_tasks}) does not split evenly over {len(nodes)} nodes and "
            "SLURM_STEP_TASKS_PER_NODE is not set; run the command with srun."
        )
    if len(counts) != len(nodes) or sum(counts) != num_tasks:
        raise LaunchError(
            f"Tasks per node {counts} do not match {len(nodes)} nodes ({found[1]}) and "
            f"SLURM_NTASKS ({num_tasks}); run the command with srun inside the job."
        )
    if (
        isinstance(port_base, bool)
        or not isinstance(port_base, int)
        or not (1 <= port_base and port_base + max(counts) - 1 <= _MAX_PORT)
    ):
        raise LaunchError(
            f"port_base ({port_base!r}) plus up to {max(counts) - 1} must be a port in "
            f"1..{_MAX_PORT}; pass e.g. --port_base={DEFAULT_PORT_BASE}."
        )
    placements = [(node, local) for node, count in enumerate(counts) for local in range(count)]
    node, local = placements[rank]
    for name, expected in (("SLURM_LOCALID", local), ("SLURM_NODEID", node)):
        if name in environ and environ[name].strip() != str(expected):
            raise LaunchError(
                f"{name} ({environ[name]!r}) is not {expected}, which task {rank} has under "
                "block distribution; run srun with --distribution=block."
            )
    if strategy == "mirrored":
        return SlurmTaskSpec(cluster=None, task_type=None, index=0, host=nodes[node])
    jobs: dict[str, list[str]] = {}
    roles = [_role(strategy, r, num_ps) for r in range(num_tasks)]
    for (task_type, _), (r_node, r_local) in zip(roles, placements, strict=False):
        jobs.setdefault(task_type, []).append(f"{nodes[r_node]}:{port_base + r_local}")
    task_type, index = roles[rank]
    return SlurmTaskSpec(
        cluster=ClusterSpec(jobs={job: tuple(addresses) for job, addresses in jobs.items()}),
        task_type=task_type,
        index=index,
        host=nodes[node],
        node_tasks=tuple(
            role for role, (r_node, _) in zip(roles, placements, strict=False) if r_node == node
        ),
    )


def _check_word(name: str, value: object, example: str) -> None:
    if not isinstance(value, str) or not _SAFE_WORD.fullmatch(value):
        raise LaunchError(
            f"{name} ({value!r}) must be one word of letters, digits and _.,:@%+=/-; "
            f"e.g. --{name}={example}."
        )


def _check_count(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LaunchError(
            f"{name} ({value!r}) must be an integer of at least {minimum}; "
            f"pass --{name}={max(minimum, 1)}."
        )


@dataclasses.dataclass(frozen=True)
class TaskPython:
    """The interpreter that runs the task helper (and a command starting with `python`).

    Attributes:
        path: An absolute path, e.g. "/opt/venv/bin/python".
        source: Where it came from, for the script's comment.
        replaces_command: Whether the command's first word (a bare `python`,
            `python3`, ...) is replaced by `path` in the script.
    """

    path: str
    source: str
    replaces_command: bool = False


def task_python(
    command: Sequence[str],
    *,
    python: str | None = None,
    which: Callable[[str], str | None] = shutil.which,
    default: str = sys.executable,
) -> TaskPython:
    """Picks the interpreter of `python -m launch.slurm.task`, once, when the script is written.

    In order: `python` when given (an absolute path); the command's first word
    when it is an absolute path to a `python*`; a bare `python`/`python3`
    resolved with `which` (the PATH of whoever writes the script, e.g. an
    activated virtualenv); else `default`, the interpreter writing the script.
    A bare python word in the command is replaced by the same path, so the
    helper and the command run in one environment whatever PATH a node has.

    Raises:
        LaunchError: If `python` is not absolute, or a bare python word of the
            command is not on PATH.
    """
    first = command[0] if command else ""
    bare = "/" not in first and bool(_PYTHON_NAME.fullmatch(first))
    if python is not None:
        if (
            not isinstance(python, str)
            or not os.path.isabs(python)
            or any(char.isspace() for char in python)
        ):
            raise LaunchError(
                f"python ({python!r}) must be an absolute path without spaces to the "
                "interpreter on the nodes, e.g. --python=/opt/venv/bin/python."
            )
        return TaskPython(python, "named by --python", replaces_command=bare)
    if os.path.isabs(first) and _PYTHON_NAME.fullmatch(os.path.basename(first)):
        return TaskPython(first, "the command's own interpreter")
    if bare:
        found = which(first)
        if found is None:
            raise LaunchError(
                f"The command's {first!r} is not on PATH here, so the script cannot name "
                "its interpreter; pass --python=/path/to/python (as on the nodes) or start "
                "the command with an absolute path."
            )
        return TaskPython(
            os.path.abspath(found),
            f"the command's {first!r}, found on PATH when this script was written",
            replaces_command=True,
        )
    return TaskPython(
        default, "the interpreter that wrote this script (the command does not start with python)"
    )


def sbatch_script(
    *,
    strategy: str,
    nodes: int,
    tasks_per_node: int,
    command: Sequence[str],
    num_ps: int = 0,
    partition: str | None = None,
    time: str | None = None,
    gpus_per_node: int = 0,
    gpus_per_worker: int = 0,
    job_name: str = "tfdist",
    port_base: int = DEFAULT_PORT_BASE,
    python: TaskPython | None = None,
) -> str:
    """Returns an sbatch script that runs `command` as every task of the cluster.

    Args:
        strategy: One of `SLURM_STRATEGIES`.
        nodes: Nodes to allocate.
        tasks_per_node: TensorFlow tasks on each node.
        command: The command every task runs, e.g. ["python", "-m", "tfdist.train"].
        num_ps: The ps tasks of a "parameter_server" cluster.
        partition: The Slurm partition, or None for the default.
        time: The time limit in Slurm's format (e.g. "01:00:00"), or None.
        gpus_per_node: GPUs to allocate on each node (`--gpus-per-node`); 0 for none.
        gpus_per_worker: GPUs of each worker task, taken from its node's GPUs;
            0 gives every task all the GPUs of its node.
        job_name: The Slurm job name.
        port_base: The port of the first task on each node; the tasks of a
            node use the ports from there up.
        python: The interpreter of the task helper; None picks it with
            `task_python(command)`.

    Raises:
        LaunchError: If an argument is invalid.
    """
    check_strategy(strategy)
    _check_count("nodes", nodes, 1)
    _check_count("tasks_per_node", tasks_per_node, 1)
    _check_count("gpus_per_node", gpus_per_node, 0)
    check_gpus_per_worker(gpus_per_worker)
    check_layout(strategy=strategy, num_tasks=nodes * tasks_per_node, num_ps=num_ps)
    if gpus_per_worker * tasks_per_node > gpus_per_node:
        raise LaunchError(
            f"gpus_per_worker ({gpus_per_worker}) x tasks_per_node ({tasks_per_node}) is more "
            f"than gpus_per_node ({gpus_per_node}); pass --gpus_per_node="
            f"{gpus_per_worker * tasks_per_node} or a smaller --gpus_per_worker."
        )
    if (
        isinstance(port_base, bool)
        or not isinstance(port_base, int)
        or not (1 <= port_base and port_base + tasks_per_node - 1 <= _MAX_PORT)
    ):
        raise LaunchError(
            f"port_base ({port_base!r}) plus {tasks_per_node - 1} must be a port in "
            f"1..{_MAX_PORT}; pass e.g. --port_base={DEFAULT_PORT_BASE}."
        )
    _check_word("job_name", job_name, "tfdist")
    if partition is not None:
        _check_word("partition", partition, "gpu")
    if time is not None and not (isinstance(time, str) and _TIME.fullmatch(time)):
        raise LaunchError(
            f"time ({time!r}) is not a Slurm time limit; use MINUTES, HH:MM:SS or "
            "DAYS-HH:MM:SS, e.g. --time=01:00:00."
        )
    check_command("command", command, example="['python', '-m', 'tfdist.train']")
    if python is None:
        python = task_python(command)
    if python.replaces_command:
        command = [python.path, *command[1:]]
    _check_word("python", python.path, "/opt/venv/bin/python")
    directives = [("job-name", job_name), ("nodes", nodes), ("ntasks-per-node", tasks_per_node)]
    directives += [("gpus-per-node", gpus_per_node)] if gpus_per_node else []
    directives += [("partition", partition)] if partition else []
    directives += [("time", time)] if time else []
    task_flags = [f"--strategy={strategy}", f"--port_base={port_base}"]
    task_flags += [f"--num_ps={num_ps}"] if num_ps else []
    task_flags += [f"--gpus_per_worker={gpus_per_worker}"] if gpus_per_worker else []
    last_port = port_base + tasks_per_node - 1
    ports = f"port {port_base}" if last_port == port_base else f"ports {port_base}-{last_port}"
    layout = {
        "mirrored": "one task on one node, over all of its GPUs (no TF_CONFIG)",
        "multi_worker": "every task is a worker; worker 0 is the chief",
        "parameter_server": f"task 0 is the chief, tasks 1-{num_ps} the ps, the rest workers",
    }[strategy]
    lines = ["#!/bin/bash"]
    lines += [f"#SBATCH --{key}={value}" for key, value in directives]
    lines += [
        f"# Generated by `python -m launch slurm`: a {strategy} TensorFlow cluster of "
        f"{nodes * tasks_per_node} task(s);",
        f"# {layout}.",
        "# Each task builds its TF_CONFIG from the SLURM_* variables srun sets.",
        f"# Interpreter: {python.path}",
        f"# ({python.source}); it runs the task helper"
        + (" and the command." if python.replaces_command else "."),
        f"# TensorFlow's gRPC servers listen on {ports} of every node, on all interfaces,",
        "# without authentication: run only on a cluster network you trust.",
        "srun --distribution=block --kill-on-bad-exit=1 "
        + shlex.join([python.path, "-m", "launch.slurm.task", *task_flags, "--", *command]),
    ]
    return "\n".join(lines) + "\n"
