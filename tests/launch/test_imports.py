"""launch/'s own imports, read with ``ast``: no cycle, and planning never imports running.

Every import counts, at any depth (inside functions, under ``if TYPE_CHECKING:``): a
type-only import is how a cycle gets hidden. A package's ``__init__`` importing its own
modules is no cycle (Python imports the parents of a module first), so a module's
parent packages are not edges of it. A failure names the cycle, e.g.
``launch.runner → launch._processes → launch.runner``.
"""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
# Preparing a launch is kept apart from spawning it (as Accelerate does): these modules
# plan, and import nothing that runs processes.
PLANNING = {"launch.plan", "launch.task_plan", "launch.task_launch", "launch.tf_config"}
RUNNING = {"launch.runner", "launch._processes", "launch.launcher", "launch.servers"}


def module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, module: str, is_package: bool, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join(package + ([base] if base else []))
    # `from launch import hosts` imports the module launch.hosts; `from launch.x import f`
    # imports launch.x.
    return [
        f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
    ]


def import_graph(root: pathlib.Path, package: str = "launch") -> dict[str, set[str]]:
    """{module: the modules of `package` it imports}, from every .py file under root/package."""
    paths = sorted((root / package).rglob("*.py"))
    names = {module_name(path, root): path for path in paths}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        is_package = path.name == "__init__.py"
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        edges = {
            target
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
            for target in _imported(node, name, is_package, set(names))
            if target in names and target != name and target not in parents
        }
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles a depth-first walk of `graph` meets, e.g. [a, b, a]; none if it has none."""
    found: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "on the path"
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "on the path":
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    return found


def reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_launch_has_no_import_cycle():
    found = cycles(import_graph(REPO))

    assert not found, "\n" + "\n".join(" → ".join(cycle) for cycle in found)


def test_planning_imports_nothing_that_runs_processes():
    graph = import_graph(REPO)

    found = {module: sorted(reaches(graph, module) & RUNNING) for module in sorted(PLANNING)}

    assert not any(found.values()), found


def test_the_runner_plans_nothing():
    graph = import_graph(REPO)

    assert not reaches(graph, "launch.runner") & {"launch.plan", "launch.task_plan"}


# ----- the checker itself, on a tree written for the purpose --------------------------------
@pytest.fixture
def tree(tmp_path):
    def write(files: dict[str, str]) -> pathlib.Path:
        for relative, source in files.items():
            path = tmp_path / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source)
        return tmp_path

    return write


def test_a_type_only_import_inside_a_function_closes_a_cycle(tree):
    root = tree(
        {
            "launch/__init__.py": "from launch.a import f\n",
            "launch/a.py": "from launch import b\n",
            "launch/b.py": (
                "import json\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    def g():\n        from .c import h\n"
            ),
            "launch/c.py": "import launch.a\n",
        }
    )

    assert cycles(import_graph(root)) == [["launch.a", "launch.b", "launch.c", "launch.a"]]


def test_a_package_importing_its_modules_and_a_chain_are_no_cycle(tree):
    root = tree(
        {
            "launch/__init__.py": "from launch.k8s.job import x\nfrom launch.a import y\n",
            "launch/a.py": "from launch.k8s import job\n",
            "launch/k8s/__init__.py": "",
            "launch/k8s/job.py": "from launch.errors import E\n",
            "launch/errors.py": "",
        }
    )

    graph = import_graph(root)

    assert cycles(graph) == []
    assert graph["launch.a"] == {"launch.k8s.job"}
    assert graph["launch.k8s.job"] == {"launch.errors"}
