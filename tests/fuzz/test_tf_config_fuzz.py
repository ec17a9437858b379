"""Fuzzed TF_CONFIG: generated malformed values end in one line, never a crash or a run.

Three layers get the same generated input: the parser (``parse_tf_config``, wherever the
schema lives: ``launch.tf_config`` and/or ``tfdist.distribute.cluster``) and
``read_tf_config``; the trainer's CLI in this process (exit code 2, one line on stderr);
and a handful of real ``python -m tfdist.train`` processes (no traceback, no hang).
Malformed values are built by breaking exactly one rule of a valid TF_CONFIG, so each
one must be refused; valid ones must parse back to what was generated.
"""

import json
import os
import subprocess
import sys

import pytest
from fuzzing import fuzz_settings, one_line
from hypothesis import given
from hypothesis import strategies as st

from launch.errors import LaunchError
from tfdist.config import ConfigError
from tfdist.distribute import cluster as tfdist_cluster

TASK_TYPES = ("chief", "worker", "ps", "evaluator")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _parsers():
    parsers = [pytest.param(tfdist_cluster.parse_tf_config, id="tfdist.distribute.cluster")]
    try:
        from launch import tf_config as launch_tf_config
    except ImportError:  # The schema may move; fuzz whichever parsers exist.
        return parsers
    if hasattr(launch_tf_config, "parse_tf_config"):
        parsers.append(pytest.param(launch_tf_config.parse_tf_config, id="launch.tf_config"))
    return parsers


PARSERS = _parsers()

_HOSTS = st.sampled_from(["localhost", "127.0.0.1", "node-1", "10.0.0.7", "w.example.com"])


@st.composite
def valid_tf_configs(draw):
    """A valid TF_CONFIG as a Python dict: workers, maybe a chief, ps (with a chief), evaluator."""
    counts = {"worker": draw(st.integers(1, 4))}
    if draw(st.booleans()):
        counts["chief"] = 1
        if draw(st.booleans()):
            counts["ps"] = draw(st.integers(1, 2))
    if draw(st.booleans()):
        counts["evaluator"] = 1
    ports = draw(
        st.lists(
            st.integers(1, 65535),
            min_size=sum(counts.values()),
            max_size=sum(counts.values()),
            unique=True,
        )
    )
    ports = iter(ports)
    cluster = {
        job: [f"{draw(_HOSTS)}:{next(ports)}" for _ in range(count)]
        for job, count in counts.items()
    }
    job = draw(st.sampled_from(sorted(cluster)))
    task = {"type": job, "index": draw(st.integers(0, len(cluster[job]) - 1))}
    return {"cluster": cluster, "task": task}


_JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_NOT_A_LIST = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=8)
    | st.dictionaries(st.text(max_size=4), _JSON_SCALARS, max_size=2)
)
_BAD_ADDRESSES = st.one_of(
    st.text(st.characters(blacklist_characters=":"), max_size=12),  # No port at all.
    st.builds(
        lambda h, p: f"{h}:{p}",
        _HOSTS,
        st.text(st.characters(whitelist_categories=("L", "P")), min_size=1, max_size=5),
    ),
    st.builds(lambda p: f":{p}", st.integers(1, 65535)),  # No host.
    st.builds(lambda h: f"{h}:", _HOSTS),  # Empty port.
    st.builds(lambda h, p: f"{h}:{p}", _HOSTS, st.just(0) | st.integers(65536, 10**9)),  # Range.
    st.none(),
    st.integers(),
    st.lists(st.integers(), max_size=2),
)


def _jobs_of(config):
    return sorted(config["cluster"])


@st.composite
def malformed_tf_configs(draw):
    """TF_CONFIG text that breaks exactly one rule of a valid one (and the rule's name)."""
    config = draw(valid_tf_configs())
    cluster, task = config["cluster"], config["task"]
    rule = draw(
        st.sampled_from(
            [
                "truncated",
                "top_level",
                "no_cluster",
                "cluster_type",
                "unknown_job",
                "job_type",
                "empty_job",
                "address",
                "duplicate",
                "two_chiefs",
                "task_type",
                "no_task",
                "task_not_job",
                "index",
                "ps_without_chief",
                "deep",
            ]
        )
    )
    if rule == "truncated":
        text = json.dumps(config)
        return rule, text[: draw(st.integers(1, len(text) - 1))]
    if rule == "top_level":
        return rule, json.dumps(
            draw(
                st.none()
                | st.booleans()
                | st.integers()
                | st.text()
                | st.lists(_JSON_SCALARS, max_size=3)
            )
        )
    if rule == "deep":
        depth = draw(st.integers(5_000, 50_000))
        return rule, draw(
            st.sampled_from(["[" * depth, '{"cluster": ' + "[" * depth, "[" * depth + "]" * depth])
        )
    if rule == "no_cluster":
        del config["cluster"]
    elif rule == "cluster_type":
        config["cluster"] = draw(
            st.just({})
            | st.just([])
            | _NOT_A_LIST.filter(
                lambda v: not (isinstance(v, dict) and v and all(k in TASK_TYPES for k in v))
            )
        )
    elif rule == "unknown_job":
        name = draw(st.text(max_size=10).filter(lambda n: n not in TASK_TYPES))
        cluster[name] = ["localhost:1"]
    elif rule == "job_type":
        cluster[draw(st.sampled_from(_jobs_of(config)))] = draw(
            _NOT_A_LIST.filter(lambda v: not isinstance(v, list))
        )
    elif rule == "empty_job":
        cluster[draw(st.sampled_from(_jobs_of(config)))] = []
    elif rule == "address":
        job = draw(st.sampled_from(_jobs_of(config)))
        cluster[job][draw(st.integers(0, len(cluster[job]) - 1))] = draw(_BAD_ADDRESSES)
    elif rule == "duplicate":
        cluster["worker"].append(cluster["worker"][0])
    elif rule == "two_chiefs":
        cluster["chief"] = ["chief-a:2222", "chief-b:2222"]
    elif rule == "task_type":
        config["task"] = draw(
            _NOT_A_LIST.filter(lambda v: not isinstance(v, dict))
            | st.dictionaries(
                st.text(max_size=5).filter(lambda k: k != "type"), _JSON_SCALARS, max_size=2
            )
        )
    elif rule == "no_task":
        del config["task"]
    elif rule == "task_not_job":
        task["type"] = draw(
            st.text(max_size=10).filter(lambda t: t not in cluster)
            | st.none()
            | st.integers()
            | st.lists(st.text(max_size=3), max_size=2)
            | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
        )
    elif rule == "index":
        size = len(cluster[task["type"]])
        task["index"] = draw(
            st.integers(size, 10**30)
            | st.integers(-(10**30), -1)
            | st.booleans()
            | st.floats()
            | st.none()
            | st.text(max_size=3)
            | st.lists(st.integers(), max_size=2)
        )
    elif rule == "ps_without_chief":
        cluster.pop("chief", None)
        cluster.setdefault("ps", ["ps-a:2222"])
        config["task"] = {"type": "worker", "index": 0}
    return rule, json.dumps(config)


def _check_refused(error, rule):
    assert isinstance(error, (ConfigError, LaunchError)), (rule, error)
    assert "\n" not in str(error), (rule, str(error))
    assert str(error).startswith("TF_CONFIG is malformed: "), (rule, str(error))


@pytest.mark.parametrize("parse", PARSERS)
@fuzz_settings(300)
@given(case=malformed_tf_configs())
def test_malformed_tf_config_is_refused_in_one_line(parse, case):
    rule, text = case
    with pytest.raises(Exception) as raised:
        parse(text)
    _check_refused(raised.value, rule)


@pytest.mark.parametrize("parse", PARSERS)
@fuzz_settings(150)
@given(config=valid_tf_configs())
def test_valid_tf_config_parses_back(parse, config):
    parsed = parse(json.dumps(config))
    assert {job: list(addresses) for job, addresses in parsed.jobs.items()} == config["cluster"]
    assert (parsed.task.type, parsed.task.index) == (
        config["task"]["type"],
        config["task"]["index"],
    )


@pytest.mark.parametrize("parse", PARSERS)
@fuzz_settings(200)
@given(
    text=st.text(max_size=60)
    | _JSON.map(json.dumps)
    | st.builds(lambda c, t: json.dumps({"cluster": c, "task": t}), _JSON, _JSON)
)
def test_any_text_parses_or_is_refused_in_one_line(parse, text):
    try:
        parsed = parse(text)
    except Exception as error:
        _check_refused(error, "any")
    else:
        assert parsed is None or parsed.task.type in parsed.jobs


@fuzz_settings(150)
@given(case=malformed_tf_configs())
def test_read_tf_config_refuses_malformed_environment(case):
    rule, text = case
    with pytest.raises(Exception) as raised:
        tfdist_cluster.read_tf_config({"TF_CONFIG": text})
    _check_refused(raised.value, rule)


def _env_safe(text):
    return "\x00" not in text


@pytest.mark.usefixtures("fresh_flags")
@fuzz_settings(150)
@given(case=malformed_tf_configs().filter(lambda case: _env_safe(case[1])))
def test_trainer_cli_exits_2_with_one_line(case, capsys):
    from absl import flags

    from tfdist.cli import train

    rule, text = case
    flags.FLAGS.unparse_flags()
    os.environ["TF_CONFIG"] = text
    try:
        with pytest.raises(SystemExit) as exited:
            train.main(["tfdist.train", "--epochs=1"])
    finally:
        del os.environ["TF_CONFIG"]
    captured = capsys.readouterr()
    assert exited.value.code == 2, (rule, text, captured.err[-2000:])
    line = one_line(captured.err)
    assert line.startswith("tfdist.train: error: TF_CONFIG is malformed: "), (rule, line)


@fuzz_settings(5)
@given(case=malformed_tf_configs().filter(lambda case: _env_safe(case[1]) and len(case[1]) < 5000))
def test_trainer_process_exits_2_with_one_line(case):
    rule, text = case
    env = dict(os.environ, TF_CONFIG=text, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, "-m", "tfdist.train", "--epochs=1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, (rule, text, done.stderr[-2000:])
    line = one_line(done.stderr)
    assert line.startswith("tfdist.train: error: TF_CONFIG is malformed: "), (rule, line)
