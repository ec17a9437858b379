"""Slurm's compressed list syntaxes, expanded in pure Python.

This module owns reading the two compact forms Slurm puts in a task's
environment: host lists such as `node[01-03,07],gpu-a[1-2]` (SLURM_JOB_NODELIST,
SLURM_STEP_NODELIST) and task counts such as `2(x3),1`
(SLURM_STEP_TASKS_PER_NODE). It runs no `scontrol` and reads no environment;
what the lists mean for a TensorFlow cluster is `launch.slurm.sbatch`'s job.
"""

import re

from launch.errors import LaunchError

_BRACKET = re.compile(r"([^\[\]]*)\[([^\[\]]*)\](.*)")
_COUNT = re.compile(r"(\d+)(?:\(x(\d+)\))?")


def _hostlist_error(text: str, why: str) -> LaunchError:
    return LaunchError(
        f"nodelist {text!r} is not valid Slurm hostlist syntax ({why}); expected e.g. "
        "'node[01-03,07]' or 'node1,node2', as in SLURM_JOB_NODELIST."
    )


def _split_top_level(text: str) -> list[str]:
    """Splits on the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for position, char in enumerate(text):
        if char == "[":
            depth += 1
            if depth > 1:
                raise _hostlist_error(text, "nested '['")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise _hostlist_error(text, "']' without '['")
        elif char == "," and depth == 0:
            parts.append(text[start:position])
            start = position + 1
    if depth:
        raise _hostlist_error(text, "'[' without ']'")
    parts.append(text[start:])
    return parts


def _expand_range(text: str, part: str) -> list[str]:
    low, dash, high = part.partition("-")
    if not low.isdigit() or (dash and not high.isdigit()):
        raise _hostlist_error(text, f"range {part!r} is not N or N-M with digits")
    if not dash:
        return [low]
    if int(high) < int(low):
        raise _hostlist_error(text, f"range {part!r} runs backwards")
    return [str(number).zfill(len(low)) for number in range(int(low), int(high) + 1)]


def _expand_expression(text: str, expression: str) -> list[str]:
    match = _BRACKET.fullmatch(expression)
    if match is None:
        return [expression]
    prefix, ranges, rest = match.groups()
    values = [value for part in ranges.split(",") for value in _expand_range(text, part)]
    suffixes = _expand_expression(text, rest) if rest else [""]
    return [prefix + value + suffix for value in values for suffix in suffixes]


def expand_hostlist(text: str) -> tuple[str, ...]:
    """Returns the host names of a Slurm host list, in order.

    Args:
        text: E.g. "node[01-03,07]", "a,b", or "rack[1-2]-n[1-2]" (ranges
            keep the zero padding of their lower bound).

    Returns:
        E.g. ("node01", "node02", "node03", "node07").

    Raises:
        LaunchError: If `text` is not valid hostlist syntax.
    """
    if not isinstance(text, str) or not text.strip():
        raise _hostlist_error(str(text), "it is empty")
    if any(char.isspace() for char in text):
        raise _hostlist_error(text, "it contains whitespace")
    hosts = []
    for expression in _split_top_level(text):
        if not expression or expression.startswith("["):
            raise _hostlist_error(text, "a host name is empty")
        hosts.extend(_expand_expression(text, expression))
    return tuple(hosts)


def expand_tasks_per_node(text: str) -> tuple[int, ...]:
    """Returns the task count of each node from Slurm's compressed form.

    Args:
        text: E.g. "2(x3),1", as in SLURM_STEP_TASKS_PER_NODE.

    Returns:
        E.g. (2, 2, 2, 1).

    Raises:
        LaunchError: If `text` is not that syntax or a count is 0.
    """
    counts = []
    for part in str(text).split(","):
        match = _COUNT.fullmatch(part.strip())
        if match is None or int(match.group(1)) < 1 or match.group(2) == "0":
            raise LaunchError(
                f"tasks per node {text!r} is not valid Slurm syntax (part {part!r}); "
                "expected counts of at least 1 such as '2(x3),1', as in "
                "SLURM_STEP_TASKS_PER_NODE."
            )
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return tuple(counts)
