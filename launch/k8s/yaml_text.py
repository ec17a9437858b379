"""A tiny YAML emitter for manifests: dicts, lists and scalars, safely quoted.

This module owns writing plain data (dict, list/tuple, str, int, float, bool,
None) as block-style YAML, so that `launch` needs no PyYAML. A string is
written bare only when YAML reads it back as that same string (letters,
digits and `._/-`, starting with a letter, and not a word such as `yes` or
`null` that YAML 1.1 reads as a boolean or null); anything else is written as a
double-quoted JSON string, which YAML reads back exactly. What goes into the
manifest is `launch.k8s.tfjob`'s job.
"""

import json
import math
import re

_BARE = re.compile(r"[A-Za-z][A-Za-z0-9._/-]*")
_SPECIAL_WORDS = {"y", "n", "yes", "no", "true", "false", "on", "off", "null", "nan", "inf"}
_INDENT = "  "

# A YAML mapping as the manifests build it: str keys, values of any plain data.
Manifest = dict[str, object]


def scalar(value: object) -> str:
    """Returns `value` (str, int, float, bool or None) as a YAML scalar.

    Raises:
        TypeError: If `value` is not a scalar, or is a non-finite float.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"Cannot write the float {value!r} as YAML; use a finite number.")
        return repr(value)
    if isinstance(value, str):
        if _BARE.fullmatch(value) and value.lower() not in _SPECIAL_WORDS:
            return value
        return json.dumps(value)
    raise TypeError(
        f"Cannot write {type(value).__name__} {value!r} as YAML; use dict, "
        "list, str, int, float, bool or None."
    )


def _is_empty_collection(value: object) -> bool:
    return isinstance(value, (dict, list, tuple)) and not value


def _lines(value: object, depth: int) -> list[str]:
    pad = _INDENT * depth
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"Mapping key {key!r} must be a str.")
            if isinstance(item, (dict, list, tuple)) and item:
                lines.append(f"{pad}{scalar(key)}:")
                lines.extend(_lines(item, depth + 1))
            else:
                lines.append(f"{pad}{scalar(key)}: {_flow(item)}")
        return lines
    if isinstance(value, (list, tuple)):
        lines = []
        for item in value:
            if isinstance(item, (dict, list, tuple)) and item:
                nested = _lines(item, depth + 1)
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {_flow(item)}")
        return lines
    return [f"{pad}{scalar(value)}"]


def _flow(value: object) -> str:
    if _is_empty_collection(value):
        return "{}" if isinstance(value, dict) else "[]"
    return scalar(value)


def dump(value: object) -> str:
    """Returns `value` as a YAML document (block style), ending with a newline.

    Raises:
        TypeError: If `value` holds something other than dicts with str keys,
            lists, tuples and scalars.
    """
    if _is_empty_collection(value) or not isinstance(value, (dict, list, tuple)):
        return _flow(value) + "\n"
    return "\n".join(_lines(value, 0)) + "\n"
