"""Errors raised by the `launch` package.

This module owns the one exception type that `launch` raises for a launch that
is described wrongly. Failures of the launched tasks themselves are not
exceptions: `launch.local.run_local` reports them in a `LaunchResult`.
"""


class LaunchError(ValueError):
    """A launch was described wrongly (cluster, task, command or setting).

    The message is one line: what was wrong, the value received, the rule, and
    the fix or the valid choices.
    """
