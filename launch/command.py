"""The user's COMMAND: split from an entry point's flags, and checked.

This module owns what `launch` takes as the command to run in a task: everything after
the first `--` of an entry point's arguments (`split_command`, shared by
`python -m launch`, `launch.slurm.task` and `launch.k8s.task`), and a non-empty
sequence of strings, never one string (`check_command`). Parsing the flags before the
`--` is each entry point's job, running the command each launcher's. Standard library
only.
"""

from collections.abc import Sequence

from launch.errors import LaunchError


def check_command(
    name: str, command: object, *, example: str = "['python', 'train.py', '--steps=10']"
) -> tuple[str, ...]:
    """Returns `command` as a tuple if it is a non-empty sequence of strings.

    Args:
        name: What the command is, as the message names it, e.g. "server_command".
        command: The value received.
        example: A valid command for the message.

    Raises:
        LaunchError: "{name} ({command!r}) must be a non-empty list of strings, e.g. {example}."
    """
    if (
        isinstance(command, str)
        or not isinstance(command, Sequence)
        or not command
        or not all(isinstance(arg, str) for arg in command)
    ):
        raise LaunchError(
            f"{name} ({command!r}) must be a non-empty list of strings, e.g. {example}."
        )
    return tuple(command)


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Splits an entry point's arguments at the first `--`: (its flags, the COMMAND).

    Without a `--` every argument is a flag and the command is empty; a later `--`
    belongs to the command.
    """
    arguments = list(argv)
    if "--" not in arguments:
        return arguments, []
    split = arguments.index("--")
    return arguments[:split], arguments[split + 1 :]
