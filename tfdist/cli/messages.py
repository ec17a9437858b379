"""Library errors in the CLI's words: the API's `name='value'` spelled as `--name=value`.

The library words its errors for a Python caller (`use strategy='parameter_server'`,
`pass model_dir=...`); flag names equal the keyword arguments, so a command-line user
gets the same message with each argument that is one of the CLI's flags written as a
flag: `name='value'` and `name=value` become `--name=value` (quoted for the shell
when needed), and a bare name with an underscore (`model_dir`) becomes `--model_dir`.
Bare names without one (`strategy`, `model`) are ordinary words too and stay.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

_NOT_INSIDE = r"(?<![\w\-/.'\"])"  # Not part of a longer word, a path, a flag or a quote.


def _assignment(match: re.Match) -> str:
    name, quoted, plain = match["name"], match["quoted"], match["plain"]
    return f"--{name}={shlex.quote(quoted) if quoted is not None else plain}"


def with_flag_spellings(message: str, flag_names: Iterable[str]) -> str:
    """`message` with the arguments among `flag_names` written as flags."""
    names = sorted(set(flag_names), key=len, reverse=True)
    if not names:
        return message
    alternatives = "|".join(map(re.escape, names))
    message = re.sub(
        rf"{_NOT_INSIDE}(?P<name>{alternatives})=(?:'(?P<quoted>[^']*)'|(?P<plain>[^\s,;)]+))",
        _assignment,
        message,
    )
    bare = "|".join(re.escape(name) for name in names if "_" in name)
    if bare:
        message = re.sub(rf"{_NOT_INSIDE}({bare})(?![\w=/'\"])", r"--\1", message)
    return message
