"""tfdist.launch's checks and task environment, without starting processes
(tests/e2e/test_launch_function_e2e.py runs real clusters)."""

import os
import sys
import threading

import pytest

import tfdist
from tfdist.config import ConfigError
from tfdist.distribute.launcher import task_env


def _fn():
    return 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(strategy="mirrored"),
            "Unknown strategy 'mirrored' for tfdist.launch. Expected one of: multi_worker, "
            "parameter_server",
        ),
        (dict(num_workers=0), "num_workers (0) must be an integer of at least 1"),
        (dict(num_workers=True), "num_workers (True) must be an integer of at least 1"),
        (
            dict(strategy="parameter_server"),
            "num_ps (0) must be at least 1 for strategy='parameter_server'; pass num_ps=1",
        ),
        (dict(num_ps=1), "num_ps (1) is only used by strategy='parameter_server'"),
        (dict(min_workers=3), "min_workers (3) must be at most num_workers (2)"),
        (
            dict(strategy="parameter_server", num_ps=1, min_workers=1),
            "min_workers (1) is for strategy 'multi_worker', not 'parameter_server'",
        ),
        (dict(max_restarts=-1), "max_restarts (-1) must be an integer of at least 0"),
    ],
)
def test_bad_options_fail_before_anything_starts(kwargs, message):
    with pytest.raises(ConfigError) as raised:
        tfdist.launch(_fn, **kwargs)
    assert message in str(raised.value)


def test_fn_must_be_callable():
    with pytest.raises(ConfigError, match=r"fn \(3\) must be callable"):
        tfdist.launch(3)


def test_arguments_that_do_not_pickle_are_named():
    with pytest.raises(ConfigError, match="could not serialise fn .* pass picklable arguments"):
        tfdist.launch(_fn, threading.Lock())


def test_task_env_is_a_new_dict_with_this_interpreters_path(monkeypatch, tmp_path):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = dict(os.environ)
    env = task_env(verbose=False, env={"MY_FLAG": "1"})
    assert dict(os.environ) == before  # The caller's environment is not written.
    assert "TF_CONFIG" not in env and env["MY_FLAG"] == "1"
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "2"
    path = env["PYTHONPATH"].split(os.pathsep)
    assert path[0] == str(tmp_path)
    assert all(entry in path for entry in sys.path if entry and os.path.isdir(entry))
    assert "TF_CPP_MIN_LOG_LEVEL" not in task_env(verbose=True, environ={})


def test_task_env_keeps_a_log_level_already_set_and_checks_env():
    assert (
        task_env(verbose=False, environ={"TF_CPP_MIN_LOG_LEVEL": "0"})["TF_CPP_MIN_LOG_LEVEL"]
        == "0"
    )
    with pytest.raises(ConfigError, match="env .* must map str to str"):
        task_env(verbose=False, environ={}, env={"N": 1})
