"""`TaskLaunch`: one task ready to spawn, the record planning hands to running.

This leaf module owns the plain record of one task of a launch (its job and index,
its command, its whole environment, whether it is a server) and the check of an
environment that planning and running share (a command's is `launch.command`'s).
Planning the tasks is `launch.task_plan`'s and `launch.plan`'s job, running them
`launch.runner`'s, and whether a task that exits is started again
`launch.restarts`'s. Standard library only; of `launch` it imports only
`launch.errors`.
"""

import dataclasses
import types
from collections.abc import Mapping, Sequence

from launch.errors import LaunchError


@dataclasses.dataclass(frozen=True)
class TaskLaunch:
    """One task, ready to spawn: its command and its complete environment.

    Attributes:
        task_type: The task's job, e.g. "worker".
        index: The task's index in its job.
        argv: The command to run (stored as a tuple).
        env: The task's whole environment (stored read-only).
        is_server: Whether the task is a server (ps, or worker under
            parameter_server): it runs until the other tasks finish and is then
            stopped; it is not expected to exit by itself.
    """

    task_type: str
    index: int
    argv: Sequence[str]
    env: Mapping[str, str]
    is_server: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "argv", tuple(self.argv))
        object.__setattr__(self, "env", types.MappingProxyType(dict(self.env)))

    @property
    def name(self) -> str:
        """The task's name, e.g. "worker:1"."""
        return f"{self.task_type}:{self.index}"


def check_env(name: str, env: object) -> Mapping[str, str]:
    """Returns `env` if it is a mapping of str to str.

    Raises:
        LaunchError: One line naming `name` and an example.
    """
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise LaunchError(f"{name} must be a mapping of str to str, e.g. dict(os.environ).")
    return env
