"""Import paths: `package.module:function` strings that name the user's own code.

This module owns telling such a path from a registered name and resolving it to
the object it names, with one-line errors that say which path, what was missing
and the expected form. What the object must be (a model builder, a source
function) and how it is called are the callers' business (`tfdist.models`,
`tfdist.data.custom`). Standard library only.
"""

from __future__ import annotations

import importlib
import re

from tfdist.config import ConfigError

_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def is_import_path(name: object) -> bool:
    """Whether `name` has the form `package.module:attribute`, not a registered name.

    A TFDS name with a version (`mnist:3.0.1`) does not: its part after the colon
    is no Python name.
    """
    return isinstance(name, str) and bool(_PATH.match(name))


def resolve(path: str, *, what: str, example: str):
    """Imports `path` (`package.module:attribute[.attribute]`) and returns the object.

    Args:
      path: the import path.
      what: the argument it came from, for messages, e.g. `"model"`.
      example: an example path for messages, e.g. `"my_models:build_model"`.

    Raises:
      ConfigError: the path is malformed, its module cannot be imported, or the
        module has no such attribute.
    """
    form = (
        f"expected {what}='package.module:function' with the module importable from the "
        f"current folder or PYTHONPATH, e.g. {what}={example!r}"
    )
    if not isinstance(path, str) or not _PATH.match(path):
        raise ConfigError(f"{what} ({path!r}) is not an import path: {form}.")
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(
            f"{what} ({path!r}): cannot import module {module_name!r} ({error}); {form}."
        ) from None
    target = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(
                f"{what} ({path!r}): module {module_name!r} ({getattr(module, '__file__', '')}) "
                f"has no attribute {attribute!r}; {form}."
            )
        target = getattr(target, part)
    return target
