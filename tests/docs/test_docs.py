"""The README and docs/*.md against the tree: links, names, commands and Python blocks.

Fast checks on the text only (no TensorFlow, nothing run): the README stays short and keeps
its two quickstart commands; every relative link and #anchor resolves; every module path
(`tfdist.data.pipeline`, `tfdist/data/in_memory.py`, `python -m launch.slurm.task`) exists;
every flag of a `python -m tfdist.train` or `python -m launch ...` command line is a flag of
that command; every Python block not marked `<!-- doc-test: skip ... -->` compiles and
imports only names that exist. The `python -m launch hosts|slurm|k8s` examples and their
output are run by tests/launch.
"""

import ast
import pathlib
import re

import pytest
from readme_examples import REPO, anchors, code_blocks, doc_path, prose
from test_cli_doc import _exists_in_absl, doc_flags, launch_sub_parser, parser_flags

import launch.__main__ as launch_cli
import launch.slurm.task as slurm_task_cli
import tfdist.cli.scaling as scaling_cli

DOCS = ["README.md", *sorted(f"docs/{path.name}" for path in (REPO / "docs").glob("*.md"))]
MAX_README_LINES = 250
QUICKSTART = (
    'python -m pip install -e ".[test]" && python -m tfdist.train',
    'python -m pip install -e ".[test]" && python -m pytest',
)


def test_readme_is_short():
    lines = len(doc_path("README.md").read_text().splitlines())

    assert lines <= MAX_README_LINES, (
        f"README.md has {lines} lines (at most {MAX_README_LINES}): move reference text to a "
        "page of docs/ and link it."
    )


def test_readme_keeps_the_two_quickstart_commands():
    shell = "\n".join(text for language, text in code_blocks("README.md") if language == "bash")

    for command in QUICKSTART:
        assert f"\n{command}\n" in f"\n{shell}", f"README.md lost the quickstart line {command!r}"


# ----- links --------------------------------------------------------------------------------
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def broken_links(doc: str) -> list[str]:
    found = []
    for target in _LINK.findall(prose(doc)):
        if re.match(r"^[a-z]+:", target):
            continue  # https://..., mailto:
        path, _, fragment = target.partition("#")
        file = (doc_path(doc).parent / path).resolve() if path else doc_path(doc)
        if not file.exists():
            found.append(f"{doc}: ({target}): no file {file.relative_to(REPO)}")
        elif (
            fragment
            and file.suffix == ".md"
            and fragment not in anchors(str(file.relative_to(REPO)))
        ):
            found.append(f"{doc}: ({target}): {file.name} has no heading #{fragment}")
    return found


@pytest.mark.parametrize("doc", DOCS)
def test_links_resolve(doc):
    found = broken_links(doc)

    assert not found, "\n" + "\n".join(found)


# ----- names of modules, files and their attributes -----------------------------------------
def _module_file(dotted: str) -> pathlib.Path | None:
    base = REPO.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def top_level_names(path: pathlib.Path) -> set[str]:
    """What a module defines at its top level (functions, classes, assignments, imports)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {target.id for target in targets if isinstance(target, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    if path == REPO / "tfdist" / "__init__.py":
        names |= facade_names()
    return names


def facade_names() -> set[str]:
    """The public names of `tfdist`: the keys of its lazy `_EXPORTS` table."""
    for node in ast.parse((REPO / "tfdist" / "__init__.py").read_text()).body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Dict)
            and any(getattr(target, "id", "") == "_EXPORTS" for target in node.targets)
        ):
            return {key.value for key in node.value.keys if isinstance(key, ast.Constant)}
    return set()


def dotted_problem(dotted: str) -> str | None:
    """Why `tfdist.a.b[.attr]` names nothing, or None (`tfdist.X`: a module or the facade's)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = _module_file(".".join(parts[:cut]))
        if module is not None:
            rest = parts[cut:]
            if not rest or (len(rest) == 1 and rest[0] in top_level_names(module)):
                return None
            return f"{'.'.join(parts[:cut])} has no {'.'.join(rest)!r}"
    return f"no module {dotted}"


_DOTTED = re.compile(r"(?<![\w./-])((?:tfdist|launch)(?:\.[A-Za-z_]\w*)+)")
_PATH = re.compile(r"(?<![\w./-])((?:tfdist|launch|tests|benchmarks|notebooks|docs)/[\w./-]*\w)")


def name_problems(doc: str) -> list[str]:
    text = doc_path(doc).read_text()
    found = [
        f"{doc}: `{name}`: {problem}"
        for name in sorted(set(_DOTTED.findall(text)))
        if (problem := dotted_problem(name))
    ]
    found += [
        f"{doc}: {path}: no such file or folder"
        for path in sorted(set(_PATH.findall(text)))
        if not (REPO / path).exists()
        and not path.endswith((".png", ".csv", ".md"))
        or (
            path.endswith((".png", ".md"))
            and path.startswith("docs/")
            and not (REPO / path).exists()
        )
    ]
    return found


@pytest.mark.parametrize("doc", DOCS)
def test_module_and_file_names_exist(doc):
    found = name_problems(doc)

    assert not found, "\n" + "\n".join(found)


# ----- command lines ------------------------------------------------------------------------
def command_texts(doc: str) -> list[str]:
    """Every line of a code block (continuations joined) and every inline code span."""
    texts = []
    for _, block in code_blocks(doc):
        texts += block.replace("\\\n", " ").splitlines()
    texts += [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", prose(doc))]
    return texts


_COMMAND = re.compile(
    r"python -m (tfdist\.train|tfdist\.scaling|launch\.slurm\.task|launch)"
    r"(?: (hosts|slurm|k8s))?(?=\s|$)(.*)"
)


def _flags_of(arguments: str) -> set[str]:
    arguments = re.split(r" #|\|", arguments)[0]
    return {
        name
        for token in arguments.split()
        if token.startswith("--") and token != "--"
        for name in doc_flags(token)
    }


def command_problems(doc: str) -> list[str]:
    parsers = {
        "launch": launch_cli._parser,
        "launch.slurm.task": slurm_task_cli._parser,
        **{f"launch {name}": launch_sub_parser(name) for name in ("hosts", "slurm", "k8s")},
    }
    found = []
    for text in command_texts(doc):
        for module, sub, arguments in _COMMAND.findall(text):
            program = f"{module} {sub}".strip()
            if module.startswith("launch"):
                own = parser_flags(parsers[program](), recursive=False)
                unknown = {
                    name
                    for name in _flags_of(arguments.split(" -- ")[0])
                    if name not in own and name.removeprefix("no-") not in own
                }
            else:
                extra = parser_flags(scaling_cli._parser()) if module == "tfdist.scaling" else set()
                unknown = {
                    name
                    for name in _flags_of(arguments)
                    if name not in extra and not _exists_in_absl(name)
                }
            found += [
                f"{doc}: `python -m {program} ... --{name}`: no such flag ({text.strip()})"
                for name in sorted(unknown)
            ]
    return found


@pytest.mark.parametrize("doc", DOCS)
def test_command_lines_use_existing_flags(doc):
    found = command_problems(doc)

    assert not found, "\n" + "\n".join(found)


# ----- Python blocks ------------------------------------------------------------------------
def python_problems(doc: str) -> list[str]:
    found = []
    for number, (language, text) in enumerate(code_blocks(doc, runnable=True)):
        if language != "python":
            continue
        where = f"{doc}, Python block {number + 1}"
        try:
            tree = ast.parse(text)
        except SyntaxError as error:
            found.append(f"{where}: does not compile: {error}")
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
                "tfdist",
                "launch",
            ):
                found += [
                    f"{where}: from {node.module} import {alias.name}: {problem}"
                    for alias in node.names
                    if (problem := dotted_problem(f"{node.module}.{alias.name}"))
                ]
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "tfdist"
                and node.attr not in facade_names()
                and _module_file(f"tfdist.{node.attr}") is None
            ):
                found.append(f"{where}: tfdist.{node.attr} is not a name of the tfdist facade")
    return found


@pytest.mark.parametrize("doc", DOCS)
def test_python_blocks_compile_and_import_what_exists(doc):
    found = python_problems(doc)

    assert not found, "\n" + "\n".join(found)


def test_readme_front_door_block_is_marked_not_run():
    every = [text for language, text in code_blocks("README.md") if language == "python"]
    runnable = [
        text for language, text in code_blocks("README.md", runnable=True) if language == "python"
    ]

    assert any("tfdist.fit(" in text for text in every)
    assert not any("tfdist.fit(" in text for text in runnable)


# ----- the checks themselves ----------------------------------------------------------------
def test_dotted_names_are_checked_down_to_the_attribute():
    assert dotted_problem("tfdist.data.pipeline.make_dataset_fn") is None
    assert dotted_problem("launch.slurm.task") is None
    assert dotted_problem("tfdist.trainer") == "tfdist has no 'trainer'"
    assert dotted_problem("tfdist.data.pipeline.no_such_fn") == (
        "tfdist.data.pipeline has no 'no_such_fn'"
    )
    assert dotted_problem("launch.slurm_task") == "launch has no 'slurm_task'"


def test_command_flags_stop_at_comments_and_tables():
    assert _flags_of(" --epochs=2 --data_service   # --not_a_flag | --nor_this") == {
        "epochs",
        "data_service",
    }


def test_data_md_source_calls_are_names_of_the_pipeline_module():
    """data.md's `source = f(...)` lines say `from tfdist.data.pipeline import ...`."""
    calls = {
        name
        for _, text in code_blocks("docs/data.md")
        for name in re.findall(r"^source = (\w+)\(", text, re.MULTILINE)
    }
    pipeline = top_level_names(REPO / "tfdist" / "data" / "pipeline.py")

    assert len(calls) >= 5, calls
    assert not calls - pipeline, (
        f"docs/data.md calls {sorted(calls - pipeline)}, which "
        "tfdist.data.pipeline does not define or import"
    )
