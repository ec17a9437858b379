"""launch.command: the user's COMMAND split from an entry point's flags, and checked."""

import pytest

from launch import LaunchError
from launch.command import check_command, split_command


@pytest.mark.parametrize(
    "argv, flags, command",
    [
        (["--a=1", "--", "python", "x.py"], ["--a=1"], ["python", "x.py"]),
        (["--a=1"], ["--a=1"], []),
        (["--a=1", "--"], ["--a=1"], []),
        (["--", "python", "--", "y"], [], ["python", "--", "y"]),  # A later -- is COMMAND's.
        ((), [], []),
    ],
)
def test_split_command_splits_at_the_first_double_dash(argv, flags, command):
    assert split_command(argv) == (flags, command)


def test_check_command_returns_a_tuple():
    assert check_command("command", ["python", "x.py"]) == ("python", "x.py")


@pytest.mark.parametrize("command", [[], "python x.py", ["python", 3], None])
def test_check_command_names_the_value_and_an_example(command):
    with pytest.raises(LaunchError) as caught:
        check_command("server_command", command, example="['python', '-m', 'tfdist.server']")

    assert str(caught.value) == (
        f"server_command ({command!r}) must be a non-empty list of strings, e.g. "
        "['python', '-m', 'tfdist.server']."
    )
