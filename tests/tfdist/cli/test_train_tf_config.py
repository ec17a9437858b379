"""The trainer in a cluster it did not start: TF_CONFIG gives the shape, flags must agree."""

import json

import pytest

from tfdist.cli import train

pytestmark = pytest.mark.usefixtures("fresh_flags")

PSS = {"chief": ["localhost:1"], "worker": ["localhost:2", "localhost:3"], "ps": ["localhost:4"]}


def _run(monkeypatch, jobs, task, *args):
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": jobs, "task": {"type": task, "index": 0}})
    )
    with pytest.raises(SystemExit) as exited:
        train.main(["tfdist.train", *args, "--epochs=1"])
    return exited.value.code


@pytest.mark.parametrize(
    "jobs, task, args, message",
    [
        (
            PSS,
            "ps",
            ["--strategy=parameter_server", "--num_workers=3"],
            "--num_workers (3) does not agree with TF_CONFIG, whose cluster has 2 worker(s); pass "
            "--num_workers=2 or leave --num_workers unset (TF_CONFIG decides).",
        ),
        (
            PSS,
            "chief",
            ["--strategy=parameter_server", "--num_ps=2"],
            "--num_ps (2) does not agree with TF_CONFIG, whose cluster has 1 ps task(s)",
        ),
        (
            PSS,
            "worker",
            ["--strategy=multi_worker"],
            "strategy 'multi_worker' cannot run in the TF_CONFIG cluster (chief, worker, "
            "ps), which "
            "has 'ps' tasks; pass --strategy=parameter_server",
        ),
        (
            {"worker": ["localhost:1", "localhost:2"]},
            "worker",
            ["--strategy=parameter_server"],
            "strategy 'parameter_server' needs 'chief' and 'ps' tasks, but the TF_CONFIG "
            "cluster has "
            "only: worker",
        ),
    ],
)
def test_flags_that_disagree_with_tf_config_exit_2_on_every_task(
    monkeypatch, capsys, jobs, task, args, message
):
    assert _run(monkeypatch, jobs, task, *args) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("tfdist.train: error: ") and message in err[0], err[0]
