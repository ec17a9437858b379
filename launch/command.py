"""The user's COMMAND: the check every launcher makes of it.

This module owns what `launch` accepts as a command to run in a task: a non-empty
sequence of strings, never one string (which would be split into characters). Running
a command is each launcher's job. Standard library only.
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
