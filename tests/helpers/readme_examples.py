"""Reads a README example: a one-line `python -m launch ...` block and the block after it."""

import pathlib
import re
import shlex

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"^```[a-z]*\n(.*?)^```\n", re.MULTILINE | re.DOTALL)


def readme_example(prefix: str) -> tuple[list[str], str]:
    """Returns (the arguments after `python -m launch`, the next code block's text).

    Args:
        prefix: How the command block starts, e.g. "python -m launch k8s".
    """
    blocks = _BLOCK.findall(README.read_text())
    for number, block in enumerate(blocks):
        if block.startswith(prefix + " "):
            lines = block.splitlines()
            assert len(lines) == 1, f"README example {prefix!r} must be one line: {block!r}"
            argv = shlex.split(lines[0])
            assert argv[:3] == ["python", "-m", "launch"], argv
            return argv[3:], blocks[number + 1]
    raise AssertionError(f"README.md has no code block starting with {prefix!r}")
