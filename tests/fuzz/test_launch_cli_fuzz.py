"""Fuzzed launcher command lines: each malformed one returns 2 with one line on stderr.

``launch.__main__.main`` gets generated command lines for the local launcher and the
``hosts``, ``slurm`` and ``k8s`` subcommands, each with exactly one malformed item
(a missing or unknown flag, a number of the wrong type or out of range, text that
would break the script or manifest it goes into, an unreadable or malformed cluster
spec file, no command) among valid flags. Every one must return 2 before anything is
started or printed on stdout, with one ``launch: error:`` line and no traceback. The
command is a Python that exits 97, so an input wrongly accepted fails fast, not hangs.
"""

import sys

from fuzzing import fuzz_settings, one_line
from hypothesis import given
from hypothesis import strategies as st

from launch.__main__ import main

COMMAND = [sys.executable, "-c", "raise SystemExit(97)"]
# `hosts` warns about open gRPC ports before it checks what it will do with the cluster.
_HOSTS_WARNING = "launch: warning: TensorFlow's gRPC servers listen"

_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=10
)


def _is_int(text):
    try:
        int(text)
        return True
    except ValueError:
        return False


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


_NOT_INT = _TEXT.filter(lambda t: not _is_int(t))
_NOT_NUMBER = _TEXT.filter(lambda t: not _is_number(t))
# Characters that would break out of a word in a shell script or a YAML scalar.
_BREAKING = st.sampled_from([" ", "\n", "\t", "'", '"', "$", ";", "`", "\\", "#", "{"])
_WORD = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
_BROKEN_WORD = st.builds(lambda a, c, b: a + c + b, _WORD, _BREAKING, _WORD)


def _flag(name, value):
    return f"--{name}={value}"


@st.composite
def _local(draw):
    """The local launcher: --strategy, --num_workers, --num_ps, --host, --stop_timeout..."""
    strategy = draw(st.sampled_from(["multi_worker", "parameter_server"]))
    flags = {
        "strategy": strategy,
        "num_workers": str(draw(st.integers(1, 3))),
        "num_ps": "1" if strategy == "parameter_server" else "0",
    }
    extra = ["--no-isolate_network"]
    kind = draw(
        st.sampled_from(
            [
                "missing",
                "strategy",
                "num_workers",
                "num_ps",
                "host",
                "stop_timeout",
                "gpus_per_worker",
                "unknown",
                "no_command",
                "boolean_value",
                "max_restarts",
                "min_workers",
            ]
        )
    )
    if kind == "missing":
        del flags[draw(st.sampled_from(["strategy", "num_workers"]))]
    elif kind == "strategy":
        flags["strategy"] = draw(
            _TEXT.filter(lambda t: t not in ("multi_worker", "parameter_server"))
        )
    elif kind == "num_workers":
        flags["num_workers"] = draw(_NOT_INT | st.integers(-(10**6), 0).map(str))
    elif kind == "num_ps":
        wrong = st.integers(1, 5) if strategy == "multi_worker" else st.integers(-5, 0)
        flags["num_ps"] = draw(_NOT_INT | wrong.map(str))
    elif kind == "host":
        flags["host"] = draw(
            st.builds(
                lambda a, c, b: a + c + b,
                _WORD,
                st.sampled_from([" ", ":", "\n", "\t", "\x00"]),
                _WORD,
            )
            | st.just("")
        )
    elif kind == "stop_timeout":
        flags["stop_timeout"] = draw(
            _NOT_NUMBER
            | st.sampled_from(["0", "-1", "nan", "-inf"])
            | st.floats(max_value=0).map(repr)
        )
    elif kind == "gpus_per_worker":
        flags["gpus_per_worker"] = draw(
            _NOT_INT | st.integers(-(10**6), -1).map(str) | st.integers(10**4, 10**6).map(str)
        )
    elif kind == "max_restarts":
        flags["max_restarts"] = draw(_NOT_INT | st.integers(-(10**6), -1).map(str))
    elif kind == "min_workers":
        # Not an integer, below 1, above --num_workers, or with parameter_server at all.
        too_many = st.integers(int(flags["num_workers"]) + 1, 10**6)
        flags["min_workers"] = draw(
            (_NOT_INT | st.integers(-(10**6), 0).map(str) | too_many.map(str))
            if strategy == "multi_worker"
            else st.integers(1, 3).map(str)
        )
    elif kind == "unknown":
        extra.append(
            "--"
            + draw(
                st.from_regex(r"[a-z][a-z_]{2,12}", fullmatch=True).filter(
                    lambda n: (
                        n
                        not in (
                            "strategy",
                            "num_workers",
                            "num_ps",
                            "host",
                            "stop_timeout",
                            "isolate_network",
                            "gpus_per_worker",
                            "help",
                            "max_restarts",
                            "min_workers",
                        )
                    )
                )
            )
        )
    elif kind == "boolean_value":
        extra[0] = f"--isolate_network={draw(_TEXT)}"
    command = [] if kind == "no_command" else COMMAND
    separator = draw(st.sampled_from([[], ["--"]])) if kind == "no_command" else ["--"]
    return kind, [_flag(k, v) for k, v in flags.items()] + extra + separator + command


@st.composite
def _slurm(draw):
    flags = {"strategy": "multi_worker", "nodes": "2", "tasks_per_node": "1"}
    kind = draw(
        st.sampled_from(
            ["strategy", "nodes", "tasks_per_node", "num_ps", "word", "port_base", "missing"]
        )
    )
    if kind == "strategy":
        flags["strategy"] = draw(
            _TEXT.filter(lambda t: t not in ("mirrored", "multi_worker", "parameter_server"))
        )
    elif kind in ("nodes", "tasks_per_node"):
        flags[kind] = draw(_NOT_INT | st.integers(-(10**6), 0).map(str))
    elif kind == "num_ps":
        flags["num_ps"] = draw(_NOT_INT | st.integers(-(10**6), -1).map(str))
    elif kind == "word":
        flags[draw(st.sampled_from(["partition", "job_name", "time"]))] = draw(_BROKEN_WORD)
    elif kind == "port_base":
        flags["port_base"] = draw(
            _NOT_INT | st.integers(-(10**6), 0).map(str) | st.integers(65536, 10**7).map(str)
        )
    else:
        del flags[draw(st.sampled_from(sorted(flags)))]
    return kind, ["slurm", *(_flag(k, v) for k, v in flags.items()), "--", *COMMAND]


@st.composite
def _k8s(draw):
    flags = {
        "strategy": "multi_worker",
        "image": "registry.example.com/tfdist:0.1",
        "num_workers": "2",
    }
    kind = draw(st.sampled_from(["strategy", "num_workers", "num_ps", "word", "missing"]))
    if kind == "strategy":
        flags["strategy"] = draw(
            _TEXT.filter(lambda t: t not in ("mirrored", "multi_worker", "parameter_server"))
        )
    elif kind == "num_workers":
        flags["num_workers"] = draw(_NOT_INT | st.integers(-(10**6), 0).map(str))
    elif kind == "num_ps":
        flags["num_ps"] = draw(_NOT_INT | st.integers(-(10**6), -1).map(str))
    elif kind == "word":  # An image reference may hold odd characters, never whitespace.
        field = draw(st.sampled_from(["image", "name", "namespace", "cpu", "memory"]))
        flags[field] = draw(
            _BROKEN_WORD
            if field != "image"
            else st.builds(
                lambda a, c, b: a + c + b, _WORD, st.sampled_from([" ", "\n", "\t"]), _WORD
            )
        )
    else:
        del flags[draw(st.sampled_from(["strategy", "image"]))]
    return kind, ["k8s", *(_flag(k, v) for k, v in flags.items()), "--", *COMMAND]


_BAD_SPEC_TEXT = st.one_of(
    st.binary(max_size=20).filter(lambda b: not b.strip().startswith(b"{")).map(bytes),
    st.integers(2_000, 50_000).map(lambda depth: ("[" * depth).encode()),
    st.just(b"\xff\xfe{"),
    st.sampled_from(
        [
            b"[]",
            b"{}",
            b'{"worker": "a:1"}',
            b'{"worker": []}',
            b'{"boss": ["a:1"]}',
            b'{"worker": ["a:1", "a:1"]}',
            b'{"worker": ["a"]}',
            b'{"worker": [5]}',
            b'{"worker": ["a:0"]}',
            b'{"worker": ["a:70000"]}',
            b"null",
        ]
    ),
)


@st.composite
def _hosts(draw, tmp_dir):
    kind = draw(
        st.sampled_from(
            [
                "hosts_entry",
                "duplicate",
                "spec_file",
                "no_spec_file",
                "both",
                "neither",
                "num_ps_with_spec",
            ]
        )
    )
    where = ["--hosts=a:2222,b:2222"]
    if kind == "hosts_entry":
        entry = draw(
            _TEXT.filter(lambda t: ":" not in t or not t.rpartition(":")[2].isdigit())
            | st.builds(lambda p: f"a:{p}", st.integers(65536, 10**6) | st.just(0))
        )
        where = [f"--hosts=a:2222,{entry}"]
    elif kind == "duplicate":
        where = ["--hosts=a:2222,a:2222"]
    elif kind in ("spec_file", "num_ps_with_spec"):
        path = tmp_dir / f"spec-{draw(st.integers(0, 10**9))}.json"
        path.write_bytes(
            draw(_BAD_SPEC_TEXT) if kind == "spec_file" else b'{"worker": ["a:1", "b:1"]}'
        )
        where = [f"--cluster_spec={path}"] + (["--num_ps=1"] if kind == "num_ps_with_spec" else [])
    elif kind == "no_spec_file":
        where = [f"--cluster_spec={tmp_dir / 'no-such-dir' / 'spec.json'}"]
    elif kind == "both":
        where.append("--cluster_spec=x.json")
    else:
        where = []
    return kind, ["hosts", "--strategy=multi_worker", *where, "--", *COMMAND]


@fuzz_settings(300)
@given(data=st.data())
def test_malformed_launch_command_lines_return_2_with_one_line(tmp_path, capsys, data):
    kind, argv = data.draw(st.one_of(_local(), _slurm(), _k8s(), _hosts(tmp_path)), label="argv")
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, (kind, argv, captured.err[-2000:])
    err = "\n".join(
        line for line in captured.err.splitlines() if not line.startswith(_HOSTS_WARNING)
    )
    line = one_line(err)
    assert line.startswith("launch: error: "), (kind, argv, line)
    assert captured.out == "", (kind, argv, captured.out[-2000:])
