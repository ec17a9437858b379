"""Errors raised by the `launch` package, and the one check of a count.

This module owns the one exception type that `launch` raises for a launch that
is described wrongly, and `check_count`, the integer check every `launch`
module uses for counts (tasks, ports, CPUs). Failures of the launched tasks
themselves are not exceptions: `launch.runner.run_local` reports them in a
`LaunchResult`.
"""


class LaunchError(ValueError):
    """A launch was described wrongly (cluster, task, command or setting).

    The message is one line: what was wrong, the value received, the rule, and
    the fix or the valid choices.
    """


def check_count(name: str, value: object, minimum: int = 0, *, fix: str = "") -> int:
    """Returns `value` if it is an integer (not a bool) of at least `minimum`.

    Args:
        name: What the value is, as the message names it, e.g. "num_workers".
        value: The value received.
        minimum: The smallest value allowed.
        fix: How to fix it, appended after "; ", e.g. "pass --num_workers=1".

    Raises:
        LaunchError: "{name} ({value!r}) must be an integer of at least {minimum}[; fix]."
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LaunchError(
            f"{name} ({value!r}) must be an integer of at least {minimum}"
            f"{'; ' + fix if fix else ''}."
        )
    return value
