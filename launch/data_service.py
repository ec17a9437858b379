"""The tf.data service of a local launch: a dispatcher and data workers as server tasks.

This module owns planning (not running) the extra tasks a launch needs when the
trainers read their input through a tf.data service: one dispatcher on a free
port and `num_workers` data workers that register with it, each a `TaskLaunch`
with `is_server=True` so that `launch.runner.run_local` stops them when the
trainers finish (and fails the launch if one dies first). The trainers learn the
dispatcher from `DataServicePlan.trainer_args`. The servers themselves are
`python -m tfdist.data_service`; this module is standard library only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from launch.command import check_command
from launch.errors import LaunchError
from launch.task_launch import TaskLaunch
from launch.task_plan import THREAD_ENV_VARS
from launch.tf_config import free_ports


@dataclasses.dataclass(frozen=True)
class DataServicePlan:
    """The service's tasks and how the trainers reach it.

    Attributes:
        address: The dispatcher, "grpc://localhost:PORT".
        launches: The dispatcher's task, then the data workers'.
    """

    address: str
    launches: tuple[TaskLaunch, ...]

    @property
    def trainer_args(self) -> tuple[str, ...]:
        """The flag that points `python -m tfdist.train` at the dispatcher."""
        return (f"--data_service_address={self.address}",)


def plan_data_service(
    *,
    command: Sequence[str],
    num_workers: int,
    base_env: Mapping[str, str],
    port: int | None = None,
    host: str = "localhost",
) -> DataServicePlan:
    """Prepares the dispatcher and `num_workers` data worker tasks; starts nothing.

    Each task's env is `base_env` without TF_CONFIG (the service is no part of the
    TensorFlow cluster), with one intra-op thread (tf.data has its own threads),
    PYTHONUNBUFFERED=1 and no GPU (CUDA_VISIBLE_DEVICES="").

    Args:
        command: The server entry, e.g. [python, "-m", "tfdist.data_service"]; the
            role and its flags are appended.
        num_workers: Data workers, at least 1.
        base_env: The environment every task starts from; not modified.
        port: The dispatcher's port; None picks a free one.
        host: The host name the trainers and workers reach the dispatcher by.

    Raises:
        LaunchError: If an argument is invalid.
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise LaunchError(
            f"num_workers ({num_workers!r}) of the data service must be an "
            "integer of at least 1; pass --data_service_workers=1."
        )
    check_command("command", command, example="['python', '-m', 'tfdist.data_service']")
    port = free_ports(1, host)[0] if port is None else port
    env = {k: v for k, v in base_env.items() if k != "TF_CONFIG"}
    for key in THREAD_ENV_VARS:
        env.setdefault(key, "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["CUDA_VISIBLE_DEVICES"] = ""
    dispatcher = f"{host}:{port}"
    launches = [
        TaskLaunch(
            task_type="dispatcher",
            index=0,
            argv=[*command, "dispatcher", f"--port={port}"],
            env=env,
            is_server=True,
        )
    ]
    launches += [
        TaskLaunch(
            task_type="data_worker",
            index=i,
            argv=[*command, "worker", f"--dispatcher_address={dispatcher}", f"--host={host}"],
            env=env,
            is_server=True,
        )
        for i in range(num_workers)
    ]
    return DataServicePlan(address=f"grpc://{dispatcher}", launches=tuple(launches))
