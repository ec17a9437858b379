"""TF_CONFIG: which cluster this process belongs to and which task it is, read and checked.

The one place tfdist reads the ``TF_CONFIG`` environment variable. A malformed value
becomes a one-line ``ConfigError`` naming the problem and the expected shape. Standard
library only, like ``tfdist.config``. Building TF_CONFIG for a new cluster is the
launcher's job (``launch.tf_config``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Mapping, Optional

from tfdist.config import ConfigError, describe_choices

TASK_TYPES = ("chief", "worker", "ps", "evaluator")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Which task of the cluster this process is."""

    type: str
    index: int

    @property
    def name(self) -> str:
        return f"{self.type}:{self.index}"


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """A validated TF_CONFIG: the cluster's jobs and this process's task."""

    jobs: Mapping[str, tuple]
    task: TaskSpec

    @property
    def has_ps(self) -> bool:
        return bool(self.jobs.get("ps"))

    @property
    def num_workers(self) -> int:
        """Processes that compute: chief plus workers (the coordinator does not, under PSS)."""
        workers = len(self.jobs.get("worker", ()))
        if self.has_ps:
            return workers
        return workers + len(self.jobs.get("chief", ()))

    @property
    def is_chief(self) -> bool:
        """The chief writes checkpoints and summaries: ``chief``, else ``worker`` 0."""
        if self.task.type == "chief":
            return True
        return "chief" not in self.jobs and self.task == TaskSpec("worker", 0)


def _tf_config_error(problem: str) -> ConfigError:
    return ConfigError(
        f"TF_CONFIG is malformed: {problem}. Expected JSON like "
        '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}.')


def _parse_jobs(cluster) -> dict:
    if not isinstance(cluster, dict) or not cluster:
        raise _tf_config_error("'cluster' must be a non-empty object of job name to addresses")
    jobs, seen = {}, {}
    for job, addresses in cluster.items():
        if job not in TASK_TYPES:
            raise _tf_config_error(
                f"unknown job {job!r} in 'cluster' (expected {describe_choices(TASK_TYPES)})")
        if isinstance(addresses, str) or not isinstance(addresses, list) or not addresses:
            raise _tf_config_error(f"job {job!r} must list one or more 'host:port' addresses")
        for index, address in enumerate(addresses):
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit():
                raise _tf_config_error(f"address {address!r} of {job}:{index} is not 'host:port'")
            if address in seen:
                raise _tf_config_error(
                    f"address {address!r} is used by both {seen[address]} and {job}:{index}")
            seen[address] = f"{job}:{index}"
        jobs[job] = tuple(addresses)
    if len(jobs.get("chief", ())) > 1:
        raise _tf_config_error("job 'chief' must have exactly one address")
    return jobs


def _parse_task(task, jobs) -> TaskSpec:
    if not isinstance(task, dict) or "type" not in task:
        raise _tf_config_error("'task' must be an object with 'type' and 'index'")
    task_type, index = task["type"], task.get("index", 0)
    if task_type not in jobs:
        raise _tf_config_error(
            f"task type {task_type!r} is not a job of the cluster ({describe_choices(jobs)})")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(jobs[task_type]):
        raise _tf_config_error(
            f"task index {index!r} is out of range for job {task_type!r} "
            f"with {len(jobs[task_type])} addresses")
    return TaskSpec(task_type, index)


def parse_tf_config(text: Optional[str]) -> Optional[ClusterConfig]:
    """Parses and validates TF_CONFIG text; None or empty means no cluster."""
    if text is None or not text.strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise _tf_config_error(f"not valid JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(data, dict):
        raise _tf_config_error("the top level must be a JSON object")
    if "cluster" not in data:
        raise _tf_config_error("it has no 'cluster'")
    jobs = _parse_jobs(data["cluster"])
    task = _parse_task(data.get("task"), jobs)
    if "ps" in jobs and "chief" not in jobs:
        raise _tf_config_error("a cluster with 'ps' tasks needs a 'chief' (the coordinator)")
    return ClusterConfig(jobs=jobs, task=task)


def read_tf_config(environ: Optional[Mapping[str, str]] = None) -> Optional[ClusterConfig]:
    """The one place tfdist reads TF_CONFIG from the environment."""
    environ = os.environ if environ is None else environ
    return parse_tf_config(environ.get("TF_CONFIG"))
