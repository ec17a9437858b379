"""Fuzzed trainer flags: every generated malformed command line ends in one line, exit 2.

Calls ``tfdist.cli.train.main`` in this process with one malformed item (a flag value of
the wrong type or out of its bounds, an unknown flag, a stray argument, a bad flagfile,
or a combination of flags the config refuses) among harmless valid flags. The flags are
read from the trainer's own absl registry, so a flag added later is fuzzed too. Each
input must end before anything trains: exit code 2, one line on stderr, no traceback.
"""

import re

import pytest
from absl import flags
from fuzzing import fuzz_settings, one_line
from hypothesis import given
from hypothesis import strategies as st

from tfdist.cli import train

pytestmark = pytest.mark.usefixtures("fresh_flags")

_FLAGS = {flag.name: flag for flag in flags.FLAGS.flags_by_module_dict()["tfdist.cli.train_flags"]}


def _named(parser_type):
    return sorted(
        name for name, flag in _FLAGS.items() if type(flag.parser).__name__ == parser_type
    )


INT_FLAGS, FLOAT_FLAGS = _named("IntegerParser"), _named("FloatParser")
ENUM_FLAGS, BOOL_FLAGS = _named("EnumParser"), _named("BooleanParser")

# Valid flags that start nothing by themselves, mixed in around the malformed item.
_HARMLESS = [
    "--epochs=2",
    "--seed=3",
    "--noshuffle",
    "--verbose",
    "--steps_per_loop=4",
    "--optimizer=sgd",
    "--learning_rate=0.01",
    "--global_batch_size=32",
]


def _parses_as_number(text):
    for parse in (lambda t: int(t, 0), int, float):
        try:
            parse(text)
            return True
        except (ValueError, OverflowError):
            pass
    return False


_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)
_NOT_A_NUMBER = _TEXT.filter(lambda t: not _parses_as_number(t))


@st.composite
def _bad_int(draw):
    name = draw(st.sampled_from(INT_FLAGS))
    bound = _FLAGS[name].parser.lower_bound
    values = [
        _NOT_A_NUMBER,
        st.floats(allow_nan=True).map(repr).filter(lambda v: "." in v or "n" in v),
    ]
    if bound is not None:
        values.append(st.integers(-(10**20), bound - 1).map(str))
    return f"--{name}={draw(st.one_of(values))}"


@st.composite
def _bad_float(draw):
    name = draw(st.sampled_from(FLOAT_FLAGS))
    value = draw(
        _NOT_A_NUMBER
        | st.sampled_from(["nan", "inf", "-inf", "NaN", "1e999", "0"])
        | st.floats(max_value=0, allow_nan=False).map(repr)
    )
    return f"--{name}={value}"


@st.composite
def _bad_enum(draw):
    name = draw(st.sampled_from(ENUM_FLAGS))
    choices = _FLAGS[name].parser.enum_values
    return f"--{name}={draw(_TEXT.filter(lambda t: t not in choices))}"


@st.composite
def _bad_bool(draw):
    name = draw(st.sampled_from(BOOL_FLAGS))
    value = draw(_TEXT.filter(lambda t: t.lower() not in ("true", "t", "1", "false", "f", "0")))
    return f"--{name}={value}"


def _unknown_flag_name(name):
    return (
        name not in flags.FLAGS
        and not (name.startswith("no") and name[2:] in flags.FLAGS)
        and "=" not in name
        and name.strip() == name
        and name != ""
    )


_UNKNOWN = st.builds(
    lambda dash, name: dash + name,
    st.sampled_from(["-", "--"]),
    st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True).filter(_unknown_flag_name),
)
_STRAY = _TEXT.filter(lambda t: t and not t.startswith("-")).map(lambda t: [t])
_IMAGE_SIZE = (
    st.text(st.sampled_from("0123456789xX+-_. ,a"), max_size=8)
    .filter(lambda t: not re.fullmatch(r"[+\d_]+([xX][+\d_]+)?", t.replace(" ", "")))
    .filter(str.strip)
)
_PROFILE_STEPS = _TEXT.filter(str.strip)  # Valid or not: without --model_dir it is refused.


@st.composite
def _refused_combination(draw):
    """Flags each valid alone that the config refuses together (before anything starts)."""
    count = draw(st.integers(1, 9))
    return draw(
        st.sampled_from(
            [
                [f"--checkpoint_every_steps={count}"],  # Needs --model_dir.
                [
                    f"--num_ps={count}",
                    "--strategy="
                    + draw(st.sampled_from(["one_device", "mirrored", "multi_worker"])),
                ],
                ["--strategy=parameter_server", "--num_ps=0"],
                [
                    f"--gpus_per_worker={count}",
                    f"--strategy={draw(st.sampled_from(['one_device', 'mirrored']))}",
                ],
                [
                    f"--num_workers={count + 1}",
                    f"--strategy={draw(st.sampled_from(['one_device', 'mirrored']))}",
                ],
                [f"--num_workers={count}", f"--min_workers={count + 1}"],  # More than workers.
                [
                    "--num_workers=3",
                    "--min_workers=2",
                    f"--global_batch_size={6 * count + 2}",
                ],  # 3 doesn't divide.
                ["--strategy=parameter_server", "--num_ps=1", f"--min_workers={count}"],
            ]
        )
    )


@st.composite
def malformed_command_lines(draw, tmp_dir):
    kind = draw(
        st.sampled_from(
            [
                "int",
                "float",
                "enum",
                "bool",
                "unknown",
                "stray",
                "image_size",
                "profile_steps",
                "combination",
                "flagfile",
            ]
        )
    )
    if kind == "int":
        bad = [draw(_bad_int())]
    elif kind == "float":
        bad = [draw(_bad_float())]
    elif kind == "enum":
        bad = [draw(_bad_enum())]
    elif kind == "bool":
        bad = [draw(_bad_bool())]
    elif kind == "unknown":
        bad = [draw(_UNKNOWN)]
    elif kind == "stray":
        bad = draw(_STRAY)
    elif kind == "image_size":
        bad = [f"--image_size={draw(_IMAGE_SIZE)}"]
    elif kind == "profile_steps":
        bad = [f"--profile_steps={draw(_PROFILE_STEPS)}"]
    elif kind == "combination":
        bad = draw(_refused_combination())
    else:  # A flagfile that is missing, or holds one malformed flag.
        inner = draw(_bad_int() | _bad_enum() | _UNKNOWN)
        path = tmp_dir / f"bad-{abs(hash(inner))}.flags"
        if draw(st.booleans()):
            path.write_text(inner + "\n")
        bad = [f"--flagfile={path}"]
    harmless = draw(st.lists(st.sampled_from(_HARMLESS), max_size=3, unique=True))
    position = draw(st.integers(0, len(harmless)))
    if kind == "stray":
        position = len(harmless)  # absl stops at the first non-flag.
    return kind, harmless[:position] + bad + harmless[position:]


@fuzz_settings(400)
@given(data=st.data())
def test_malformed_flags_exit_2_with_one_line(tmp_path, capsys, data):
    kind, argv = data.draw(malformed_command_lines(tmp_path), label="argv")
    flags.FLAGS.unparse_flags()
    with pytest.raises(SystemExit) as exited:
        train.main(["tfdist.train", *argv])
    captured = capsys.readouterr()
    assert exited.value.code == 2, (kind, argv, captured.err[-2000:])
    line = one_line(captured.err)
    assert line.startswith("tfdist.train: error: "), (kind, argv, line)
    assert captured.out == "", (kind, argv, captured.out[-2000:])
