"""The dependency direction of docs/architecture.md, checked on the source with ``ast``.

``cli → training → {data, distribute, root modules} → config``; ``launch`` is
standard-library-only; only ``tfdist/cli`` (and, in ``launch``, the entry points)
reads flags or argparse; only the cli and the ``python -m tfdist.X`` runners import
``tfdist.cli``, and only the cli imports the facade (``import tfdist``). Every import counts, at
any depth (inside functions, under
``if TYPE_CHECKING:``, ``importlib.import_module("...")`` with a literal, the
facade's lazy ``_EXPORTS`` table): a type-only import still says one layer knows
another's types, and is how a cycle gets hidden. A failure names ``file:line`` and
the arrow, e.g. ``tfdist/layers.py:12: root → distribute (tfdist.distribute.x)``.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import NamedTuple

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
RUNNERS = {"train", "server", "data_service", "scaling"}  # tfdist/X.py: `python -m tfdist.X`.
SUBPACKAGES = {"data", "distribute", "training", "cli"}

# Which layers each layer may import. "root": tfdist/*.py that all share (models, layers,
# optimizers, precision, resources, ...); "launch.tf_config": the TF_CONFIG schema's types.
ALLOWED = {
    "config": {"config"},
    "root": {"config", "root"},
    "data": {"config", "root", "data", "launch.tf_config"},
    "distribute": {"config", "root", "distribute", "launch"},
    "training": {"config", "root", "data", "distribute", "training", "launch"},
    "cli": {"config", "root", "data", "distribute", "training", "cli", "launch", "facade"},
    "runner": {"cli"},
    "facade": {"config", "root", "data", "distribute", "training", "launch"},
}


class Import(NamedTuple):
    path: pathlib.Path
    line: int
    module: str

    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def python_files(package: str) -> list[pathlib.Path]:
    return sorted(path for path in (REPO / package).rglob("*.py") if ".venv" not in path.parts)


def dotted_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node: ast.ImportFrom, path: pathlib.Path) -> str:
    if not node.level:
        return node.module or ""
    package = dotted_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: pathlib.Path) -> Iterator[Import]:
    """Every module ``path`` imports, wherever the statement stands."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, path)
            for alias in node.names:  # `from tfdist import config` imports tfdist.config.
                full = f"{module}.{alias.name}"
                mine = module.split(".")[0] in ("tfdist", "launch")
                yield Import(path, node.lineno, full if not mine or _is_module(full) else module)
        elif (
            isinstance(node, ast.Call)
            and _called_name(node) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            yield Import(path, node.lineno, str(node.args[0].value))
        elif (
            isinstance(node, ast.Assign)
            and path == REPO / "tfdist" / "__init__.py"
            and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets)
        ):
            for value in getattr(node.value, "values", []):
                if isinstance(value, ast.Constant):
                    yield Import(path, value.lineno, str(value.value))


def _is_module(dotted: str) -> bool:
    base = REPO.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def layer_of_file(path: pathlib.Path) -> str:
    parts = path.relative_to(REPO / "tfdist").parts
    if len(parts) > 1:
        if parts[0] == "config":
            return "config"
        return parts[0] if parts[0] in SUBPACKAGES else "root"  # tfdist/resources/ is root.
    stem = path.stem
    if stem == "__init__":
        return "facade"
    if stem == "config":
        return "config"
    return "runner" if stem in RUNNERS else "root"


def layer_of_module(module: str) -> str | None:
    """The layer of an imported tfdist or launch module; None for anything else."""
    parts = module.split(".")
    if parts[0] == "launch":
        return "launch.tf_config" if parts[:2] == ["launch", "tf_config"] else "launch"
    if parts[0] != "tfdist":
        return None
    if len(parts) == 1:
        return "facade"
    if parts[1] == "config":
        return "config"
    if parts[1] in SUBPACKAGES:
        return parts[1]
    return "runner" if parts[1] in RUNNERS else "root"


def _permits(allowed: set[str], target: str) -> bool:
    return target in allowed or (target == "launch.tf_config" and "launch" in allowed)


def tfdist_violations() -> list[str]:
    found = []
    for path in python_files("tfdist"):
        layer = layer_of_file(path)
        for imported in imports_of(path):
            target = layer_of_module(imported.module)
            if target is not None and not _permits(ALLOWED[layer], target):
                found.append(f"{imported.where()}: {layer} → {target} ({imported.module})")
    return found


def _is_entry_point(path: pathlib.Path, tree: ast.Module) -> bool:
    """``__main__.py`` or a module with an ``if __name__ == "__main__":`` block."""
    if path.name == "__main__.py":
        return True
    return any(
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
        for node in tree.body
    )


def launch_violations() -> list[str]:
    found = []
    for path in python_files("launch"):
        for imported in imports_of(path):
            top = imported.module.split(".")[0]
            if top != "launch" and top not in sys.stdlib_module_names:
                found.append(
                    f"{imported.where()}: launch → {imported.module} "
                    "(launch imports only the standard library and launch)"
                )
    return found


def _flag_uses(path: pathlib.Path, tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called_name(node).startswith("DEFINE_"):
            yield node.lineno, f"defines a flag ({_called_name(node)})"
    for imported in imports_of(path):
        if imported.module == "argparse" or imported.module.startswith("argparse."):
            yield imported.line, "uses argparse"
        elif imported.module in ("absl.flags", "absl.flags.argparse_flags"):
            yield imported.line, "uses absl flags"


def flag_violations() -> list[str]:
    found = []
    for package in ("tfdist", "launch"):
        for path in python_files(package):
            tree = ast.parse(path.read_text(), filename=str(path))
            if package == "tfdist" and path.is_relative_to(REPO / "tfdist" / "cli"):
                continue
            if package == "launch" and _is_entry_point(path, tree):
                continue
            for line, what in _flag_uses(path, tree):
                where = "outside tfdist/cli" if package == "tfdist" else "outside an entry point"
                found.append(f"{path.relative_to(REPO)}:{line}: {what} {where}")
    return sorted(set(found))


def test_tfdist_imports_follow_cli_training_data_distribute_root_config():
    found = tfdist_violations()
    assert not found, "\n" + "\n".join(found)


def test_launch_imports_only_the_standard_library():
    found = launch_violations()
    assert not found, "\n" + "\n".join(found)


def test_only_the_cli_and_launch_entry_points_read_flags_or_argparse():
    found = flag_violations()
    assert not found, "\n" + "\n".join(found)


# ----- one of each: one step implementation, one callback protocol, one History ----------
STEP_MODULE = "tfdist/training/step.py"
KERAS_CALLBACK_BASES = {"keras.callbacks.Callback", "keras.callbacks.History"}


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return getattr(node, "id", "")


def second_steps() -> list[str]:
    """Places outside the step module that take gradients or apply them."""
    found = []
    for path in python_files("tfdist"):
        if path.relative_to(REPO).as_posix() == STEP_MODULE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            name = _dotted(node.func) if isinstance(node, ast.Call) else ""
            if name.endswith(("GradientTape", ".gradient", "apply_gradients")):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}(...)")
    return found


def second_callback_protocols() -> list[str]:
    """Classes with hook methods (`on_...`) that are not Keras callbacks, and any class named
    like a callback protocol or history of tfdist's own."""
    found = []
    for path in python_files("tfdist"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {_dotted(base) for base in node.bases}
            hooks = [
                f.name
                for f in node.body
                if isinstance(f, ast.FunctionDef) and f.name.startswith("on_")
            ]
            where = f"{path.relative_to(REPO)}:{node.lineno}: class {node.name}"
            keras_based = bool(bases & KERAS_CALLBACK_BASES)
            if hooks and not keras_based:
                found.append(f"{where} has hooks {hooks} but is not a keras.callbacks.Callback")
            if node.name in ("Callback", "CallbackList", "LoopLog", "EpochLog") or (
                node.name == "History" and not keras_based
            ):
                found.append(f"{where}: a second {node.name}")
    return found


def test_one_step_implementation():
    found = second_steps()
    assert not found, "\n" + "\n".join(found)


def test_one_callback_protocol_and_one_history():
    found = second_callback_protocols()
    assert not found, "\n" + "\n".join(found)


# ----- the checker itself, on sources written for the purpose ------------------------------
@pytest.fixture
def fake_module(tmp_path, monkeypatch):
    """Writes a module at a path of the real tree's shape under a temporary REPO."""
    monkeypatch.setitem(globals(), "REPO", tmp_path)

    def write(relative: str, source: str) -> pathlib.Path:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(tmp_path).parents:
            if parent != pathlib.Path(".") and not (tmp_path / parent / "__init__.py").exists():
                (tmp_path / parent / "__init__.py").write_text("")
        path.write_text(source)
        return path

    return write


def test_checker_finds_imports_inside_functions_relative_and_type_checking(fake_module):
    fake_module("tfdist/distribute/partitioning.py", "")
    fake_module("tfdist/training/trainer.py", "")
    fake_module(
        "tfdist/layers.py",
        (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from tfdist.training import trainer\n"
            "def f():\n"
            "    from .distribute import partitioning\n"
        ),
    )

    assert tfdist_violations() == [
        "tfdist/layers.py:3: root → training (tfdist.training.trainer)",
        "tfdist/layers.py:5: root → distribute (tfdist.distribute.partitioning)",
    ]


def test_checker_allows_the_direction_and_flags_the_cli_import(fake_module):
    fake_module("tfdist/training/step.py", "import tfdist.layers\nfrom tfdist.data import x\n")
    fake_module(
        "tfdist/data/pipeline.py",
        "from launch.tf_config import ClusterSpec\n"
        "import importlib\nimportlib.import_module('tfdist.cli.job')\n",
    )
    fake_module("tfdist/config.py", "import keras\n")

    assert tfdist_violations() == ["tfdist/data/pipeline.py:3: data → cli (tfdist.cli.job)"]


def test_checker_flags_third_party_imports_and_argparse_in_launch(fake_module):
    fake_module("launch/local.py", "import json\nimport yaml\ndef f():\n    import argparse\n")
    fake_module("launch/task.py", "import argparse\nif __name__ == '__main__':\n    pass\n")

    assert launch_violations() == [
        "launch/local.py:2: launch → yaml (launch imports only the standard library and launch)"
    ]
    assert flag_violations() == ["launch/local.py:4: uses argparse outside an entry point"]


def test_checker_finds_a_second_step_and_a_second_callback_protocol(fake_module):
    fake_module("tfdist/training/step.py", "def f(t, o):\n    t.gradient(1, 2)\n")
    fake_module(
        "tfdist/training/mine.py",
        "import tensorflow as tf\n"
        "def g(o):\n    with tf.GradientTape():\n        o.apply_gradients([])\n"
        "class Hooks:\n    def on_epoch_end(self, epoch):\n        pass\n"
        "class History:\n    pass\n"
        "class Fine(keras.callbacks.Callback):\n    def on_epoch_end(self, epoch):\n        pass\n",
    )

    assert second_steps() == [
        "tfdist/training/mine.py:3: tf.GradientTape(...)",
        "tfdist/training/mine.py:4: o.apply_gradients(...)",
    ]
    assert second_callback_protocols() == [
        "tfdist/training/mine.py:5: class Hooks has hooks ['on_epoch_end'] but is not a "
        "keras.callbacks.Callback",
        "tfdist/training/mine.py:8: class History: a second History",
    ]


def test_checker_flags_flag_definitions_outside_the_cli(fake_module):
    fake_module("tfdist/cli/train.py", "from absl import flags\nflags.DEFINE_integer('a', 1, '')\n")
    fake_module(
        "tfdist/data/x.py", "from absl import flags\n_A = flags.DEFINE_string('a', '', '')\n"
    )

    assert flag_violations() == [
        "tfdist/data/x.py:1: uses absl flags outside tfdist/cli",
        "tfdist/data/x.py:2: defines a flag (DEFINE_string) outside tfdist/cli",
    ]


# ----- importing the light entry points starts no TensorFlow -------------------------------
@pytest.mark.parametrize("module", ["tfdist", "tfdist.config", "launch", "launch.__main__"])
def test_importing_starts_no_tensorflow(module):
    code = (
        f"import sys, {module}\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
