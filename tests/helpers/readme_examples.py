"""Reads the README and docs/*.md: their code blocks, and a `python -m launch ...` example.

A code block is a fenced block (```` ```lang ````). A block right after a line
``<!-- doc-test: skip ... -->`` is left out of `code_blocks(..., runnable=True)`: it shows
code that needs what the doc tests do not have (a data set, a cluster).
"""

import pathlib
import re
import shlex
import textwrap

REPO = pathlib.Path(__file__).resolve().parents[2]
README = REPO / "README.md"
SKIP_MARK = "<!-- doc-test: skip"
_BLOCK = re.compile(
    r"^(<!-- doc-test: skip[^\n]*-->\n)?([ \t]*)```([^\n`]*)\n(.*?)^\2```[ \t]*\n",
    re.MULTILINE | re.DOTALL,
)  # Indented blocks (in a list item) too.


def doc_path(doc: str = "README.md") -> pathlib.Path:
    """The file `doc` names, relative to the repository root (e.g. "docs/deployment.md")."""
    path = REPO / doc
    assert path.is_file(), f"{doc} does not exist under {REPO}"
    return path


def code_blocks(doc: str = "README.md", *, runnable: bool = False) -> list[tuple[str, str]]:
    """(language, text) of every fenced code block of `doc`, in order.

    Args:
        doc: The file, relative to the repository root.
        runnable: Leave out the blocks marked `<!-- doc-test: skip ... -->`.
    """
    return [
        (language.strip(), textwrap.dedent(text))
        for skip, _, language, text in _BLOCK.findall(doc_path(doc).read_text())
        if not (runnable and skip)
    ]


def readme_example(prefix: str, *, doc: str = "README.md") -> tuple[list[str], str]:
    """Returns (the arguments after `python -m launch`, the next code block's text).

    Args:
        prefix: How the command block starts, e.g. "python -m launch k8s".
        doc: The file that holds the example, relative to the repository root, e.g.
            "docs/deployment.md".
    """
    blocks = [text for _, text in code_blocks(doc)]
    for number, block in enumerate(blocks):
        if block.startswith(prefix + " "):
            lines = block.splitlines()
            assert len(lines) == 1, f"{doc} example {prefix!r} must be one line: {block!r}"
            assert number + 1 < len(blocks), (
                f"{doc} example {prefix!r} has no output block after it"
            )
            argv = shlex.split(lines[0])
            assert argv[:3] == ["python", "-m", "launch"], argv
            return argv[3:], blocks[number + 1]
    raise AssertionError(f"{doc} has no code block starting with {prefix!r}")


def _outside_fences(text: str) -> list[tuple[bool, str]]:
    """(inside a fenced block?, line) of every line of `text`."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            lines.append((True, line))
        else:
            lines.append((fenced, line))
    return lines


_HEADING = re.compile(r"^(#{1,6}) +(.*?) *#*$")


def anchor(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def sections(doc: str = "README.md") -> list[tuple[int, str, str]]:
    """(level, title, text up to the next heading of the same or a higher level) per heading.

    Lines inside fenced code blocks are never headings (a `# comment` of a shell block).
    """
    lines = _outside_fences(doc_path(doc).read_text())
    heads = [
        (number, len(match[1]), match[2])
        for number, (fenced, line) in enumerate(lines)
        if not fenced and (match := _HEADING.match(line))
    ]
    found = []
    for position, (number, level, title) in enumerate(heads):
        end = next(
            (later for later, later_level, _ in heads[position + 1 :] if later_level <= level),
            len(lines),
        )
        found.append((level, title, "\n".join(line for _, line in lines[number + 1 : end])))
    return found


def section(doc: str, title: str, *, own: bool = False) -> str:
    """The text under the heading `title` of `doc`.

    Args:
        doc: The file, relative to the repository root.
        title: The heading's text, without the leading #s.
        own: Stop at the next heading of any level (leave out sub-sections).
    """
    for _level, heading, text in sections(doc):
        if heading == title:
            if own:
                text = re.split(r"^#{1,6} ", text, maxsplit=1, flags=re.MULTILINE)[0]
            return text
    raise AssertionError(f"{doc} has no heading {title!r}")


def prose(doc: str) -> str:
    """The text of `doc` outside fenced code blocks."""
    return "\n".join(
        line for fenced, line in _outside_fences(doc_path(doc).read_text()) if not fenced
    )


def anchors(doc: str) -> set[str]:
    """The anchors of every heading of `doc` (GitHub adds -1, -2 to repeated ones)."""
    found: set[str] = set()
    for _, title, _ in sections(doc):
        base = anchor(title.replace("`", ""))
        name, count = base, 0
        while name in found:
            count += 1
            name = f"{base}-{count}"
        found.add(name)
    return found


_RULE = re.compile(r"^\|[\s:|-]+\|?\s*$")


def table_first_cells(text: str) -> list[str]:
    """The first cell of every table row of `text` (header and rule rows left out)."""
    lines = text.splitlines()
    cells = []
    for number, line in enumerate(lines):
        header = number + 1 < len(lines) and _RULE.match(lines[number + 1])
        if line.startswith("|") and not _RULE.match(line) and not header:
            cells.append(line.split("|")[1].strip())
    return cells
