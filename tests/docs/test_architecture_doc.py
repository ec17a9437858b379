"""docs/architecture.md lists every module of tfdist/ and launch/, under its package, and no other.

Each package with modules has a heading `## tfdist/`, `### tfdist/data/`, ... whose tables
name its modules in their first column (`` `pipeline.py` ``); a folder without modules of
its own (`resources/`) is a row of its parent. A failure lists the rows to add, with each
module's docstring summary as a start, or the rows whose module is gone.
"""

import ast
import pathlib
import re

from readme_examples import REPO, sections, table_first_cells

DOC = "docs/architecture.md"
PACKAGES = ("tfdist", "launch")


def _has_code(path: pathlib.Path) -> bool:
    return bool(path.read_text().strip())


def _modules(folder: pathlib.Path) -> set[str]:
    return {path.name for path in folder.glob("*.py") if _has_code(path)}


def package_folders() -> list[pathlib.Path]:
    """Every folder of tfdist/ and launch/ with a module of its own (an empty __init__ aside)."""
    folders = []
    for package in PACKAGES:
        for folder in sorted([REPO / package, *(REPO / package).rglob("*")]):
            if folder.is_dir() and "__pycache__" not in folder.parts and _modules(folder):
                folders.append(folder)
    return folders


def expected_rows() -> dict[str, set[str]]:
    """Heading (`tfdist/data/`) → the names its tables must list (`pipeline.py`, `resources/`)."""
    folders = package_folders()
    rows = {}
    for folder in folders:
        children = {
            f"{child.name}/"
            for child in folder.iterdir()
            if child.is_dir() and (child / "__init__.py").exists() and child not in folders
        }
        rows[f"{folder.relative_to(REPO)}/"] = _modules(folder) | children
    return rows


def documented_rows() -> dict[str, set[str]]:
    """Heading → the `name.py` / `name/` names in the first column of its own tables."""
    found = {}
    for _, title, text in sections(DOC):
        own = re.split(r"^#{1,6} ", text, maxsplit=1, flags=re.MULTILINE)[0]
        names = {
            name
            for cell in table_first_cells(own)
            for name in re.findall(r"`([\w.]+\.py|\w+/)`", cell)
        }
        if names:
            found[title.strip("`")] = names
    return found


def _summary(path: pathlib.Path) -> str:
    if path.is_dir():
        return "a folder"
    docstring = ast.get_docstring(ast.parse(path.read_text())) or "(no docstring)"
    return docstring.strip().splitlines()[0]


def missing_and_stale(expected, documented) -> tuple[list[str], list[str]]:
    missing, stale = [], []
    for heading, names in expected.items():
        have = documented.get(heading, set())
        missing += [
            f"  under '{heading}': | `{name}` | {_summary(REPO / heading / name)} |"
            for name in sorted(names - have)
        ]
    for heading, names in documented.items():
        gone = names - expected.get(heading, set())
        stale += [f"  under '{heading}': `{name}`" for name in sorted(gone)]
    return missing, stale


def test_every_module_has_a_row_and_every_row_a_module():
    missing, stale = missing_and_stale(expected_rows(), documented_rows())

    assert not missing, (
        f"{DOC} lacks these modules; add a row each (what the module owns, "
        "one line) under the package's heading, and the name to the tree at "
        "the top:\n" + "\n".join(missing)
    )
    assert not stale, f"{DOC} lists modules that are gone; remove them:\n" + "\n".join(stale)


def test_the_check_names_what_to_add_and_what_is_gone():
    expected = {"launch/": {"local.py", "plan.py"}, "launch/k8s/": {"tfjob.py"}}
    documented = {"launch/": {"local.py", "old.py"}, "launch/k8s/": {"tfjob.py"}}

    missing, stale = missing_and_stale(expected, documented)

    assert missing == [f"  under 'launch/': | `plan.py` | {_summary(REPO / 'launch/plan.py')} |"]
    assert stale == ["  under 'launch/': `old.py`"]


def test_the_real_tree_has_the_layers_this_page_describes():
    expected = expected_rows()

    assert {
        "tfdist/",
        "tfdist/data/",
        "tfdist/distribute/",
        "tfdist/training/",
        "tfdist/cli/",
        "launch/",
        "launch/slurm/",
        "launch/k8s/",
    } <= set(expected)
    assert "resources/" in expected["tfdist/"]
