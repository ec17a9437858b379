"""docs/cli.md against the command lines' own definitions: every flag there, none that is gone.

The trainer's flags are read from absl (importing ``tfdist.cli.train_flags`` defines them; no
TensorFlow starts), the launcher's and the other commands' from their argparse parsers. A
failure lists the table rows to add (with the flag's default and help text) or the flags to
remove, so whoever adds a flag knows what to write.
"""

import argparse
import re

import pytest
from absl import app, flags
from readme_examples import section, table_first_cells

import launch.__main__ as launch_cli
import launch.slurm.task as slurm_task_cli
import tfdist.cli.data_service as data_service_cli
import tfdist.cli.scaling as scaling_cli
import tfdist.cli.train_flags as train_cli

CLI_DOC = "docs/cli.md"
TRAINER = "python -m tfdist.train"
ABSL_DIRECTIVES = {"flagfile", "undefok"}  # absl reads these while parsing; not in FLAGS.
_FLAG = re.compile(r"--(\[no-?\])?([A-Za-z][\w-]*)")

app.define_help_flags()  # --help, --helpfull, ...: absl defines them when app.run starts.


def doc_flags(text: str) -> set[str]:
    """The flag names written as `--name`, `--[no]name` or `--[no-]name` in `text`."""
    return {match[2] for match in _FLAG.finditer(text)}


def _documented(title: str, *, own: bool = False) -> set[str]:
    cells = table_first_cells(section(CLI_DOC, title, own=own))
    return {name for cell in cells for name in doc_flags(cell)}


# ----- python -m tfdist.train ---------------------------------------------------------------
def trainer_flags() -> dict[str, flags.Flag]:
    """The flags `python -m tfdist.train` defines itself, by name."""
    return {flag.name: flag for flag in flags.FLAGS.get_flags_for_module(train_cli)}


def _exists_in_absl(name: str) -> bool:
    if name in flags.FLAGS or name in ABSL_DIRECTIVES:
        return True
    negated = name[2:] if name.startswith("no") else None  # --noshuffle
    return negated in flags.FLAGS and isinstance(flags.FLAGS[negated], flags.BooleanFlag)


def _row(flag: flags.Flag) -> str:
    spelled = f"--[no]{flag.name}" if isinstance(flag, flags.BooleanFlag) else f"--{flag.name}"
    default = "none" if flag.default is None else f"{flag.default}"
    return f"| `{spelled}` | {default} | {flag.help} |"


def missing_trainer_rows(defined: dict[str, flags.Flag], documented: set[str]) -> list[str]:
    return [_row(defined[name]) for name in sorted(set(defined) - documented)]


def test_every_trainer_flag_has_a_row_in_cli_md():
    missing = missing_trainer_rows(trainer_flags(), _documented(TRAINER))

    assert not missing, (
        f"{CLI_DOC} lacks {len(missing)} flag(s) of `{TRAINER}`; add one row each to a "
        f"table under '## {TRAINER}' (shorten the help to one line):\n" + "\n".join(missing)
    )


def test_every_flag_cli_md_names_for_the_trainer_exists():
    gone = sorted(
        name for name in doc_flags(section(CLI_DOC, TRAINER)) if not _exists_in_absl(name)
    )

    assert not gone, (
        f"{CLI_DOC} names flag(s) under '## {TRAINER}' that `{TRAINER}` does "
        f"not define: {', '.join('--' + name for name in gone)}; remove or "
        "rename them."
    )


# ----- python -m launch and the other argparse commands -------------------------------------
def parser_flags(parser: argparse.ArgumentParser, *, recursive: bool = True) -> set[str]:
    """Every long option of `parser` (and of its sub-parsers if `recursive`), without --."""
    names = set()
    for action in parser._actions:
        if recursive and isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                names |= parser_flags(child)
        long = [option for option in action.option_strings if option.startswith("--")]
        if long:
            names.add(min(long, key=len)[2:])  # --isolate_network, not --no-isolate_network
    return {
        name
        for name in names  # --noisolate_network as an option of its own
        if not (name.startswith("no") and name[2:].lstrip("-") in names)
    }


def sub_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parsers of `parser`'s sub-commands, by name."""
    return {
        name: child
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name, child in action.choices.items()
    }


def launch_sub_parser(name: str):
    """A function returning the parser of `python -m launch NAME`."""
    return lambda: sub_parsers(launch_cli._parser())[name]


def _with_negations(names: set[str]) -> set[str]:
    return names | {f"no-{name}" for name in names}


ARGPARSE_COMMANDS = {
    "python -m launch": (launch_cli._parser, True),
    "python -m launch hosts": (launch_sub_parser("hosts"), False),
    "python -m launch slurm": (launch_sub_parser("slurm"), False),
    "python -m launch k8s": (launch_sub_parser("k8s"), False),
    "python -m launch.slurm.task": (slurm_task_cli._parser, False),
    "python -m tfdist.scaling": (scaling_cli._parser, False),
    "python -m tfdist.data_service": (data_service_cli._parser, False),
}


def test_every_launch_sub_command_has_a_section():
    names = sub_parsers(launch_cli._parser())
    assert set(names) == {"hosts", "slurm", "k8s"}, (
        f"python -m launch has sub-commands {sorted(names)}: give each new "
        f"one a '### python -m launch NAME' section in {CLI_DOC} and an entry in "
        "ARGPARSE_COMMANDS here."
    )


@pytest.mark.parametrize("title", ARGPARSE_COMMANDS)
def test_argparse_flags_and_cli_md_agree(title):
    make_parser, own = ARGPARSE_COMMANDS[title]
    defined = parser_flags(make_parser(), recursive=not own)
    documented = _documented(title, own=own)

    missing = sorted(defined - documented)
    gone = sorted(documented - _with_negations(defined))
    assert not missing, (
        f"{CLI_DOC} lacks flag(s) of `{title}`; add a row each under its "
        f"heading: {', '.join('--' + name for name in missing)} (see "
        f"`{title} --help`)."
    )
    assert not gone, (
        f"{CLI_DOC} documents flag(s) `{title}` does not have: "
        f"{', '.join('--' + name for name in gone)}; remove or rename them."
    )


# ----- the checks themselves, on small inputs ------------------------------------------------
def test_doc_flags_reads_negations_and_stops_at_the_value():
    assert doc_flags("`--[no]shuffle`, `--[no-]isolate_network`, `--model_dir=/x`, -- cmd") == {
        "shuffle",
        "isolate_network",
        "model_dir",
    }


def test_a_missing_trainer_flag_is_reported_as_a_row_to_add():
    defined = trainer_flags()

    rows = missing_trainer_rows(defined, set(defined) - {"epochs", "shuffle"})

    assert rows == [
        "| `--epochs` | 20 | Epochs to train. |",
        f"| `--[no]shuffle` | True | {defined['shuffle'].help} |",
    ]


def test_negated_booleans_exist_but_negated_integers_do_not():
    assert _exists_in_absl("noshuffle") and _exists_in_absl("flagfile")
    assert not _exists_in_absl("noepochs") and not _exists_in_absl("no_such_flag")
