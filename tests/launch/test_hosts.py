"""Tests for launch.hosts and `python -m launch hosts`: multi-host plans, lines, env files."""

import json
import shlex
import subprocess
import sys

import pytest
from readme_examples import readme_example

from launch import LaunchError, free_ports
from launch.__main__ import main
from launch.hosts import (
    env_files,
    open_ports_warning,
    parse_hosts,
    plan_hosts_cluster,
    read_cluster_spec,
    task_lines,
    tasks_on_host,
)

PY = sys.executable
COMMAND = ["python", "-m", "tfdist.train", "--strategy=parameter_server", "--num_ps=1"]


def _pss():
    return plan_hosts_cluster(
        strategy="parameter_server", num_ps=1, hosts=["a:2222", "b:2222", "c:2222", "c:2223"]
    )


def test_parameter_server_layout_from_hosts():
    assert _pss().as_dict() == {
        "chief": ["a:2222"],
        "worker": ["c:2222", "c:2223"],
        "ps": ["b:2222"],
    }


def test_multi_worker_layout_from_hosts():
    cluster = plan_hosts_cluster(strategy="multi_worker", hosts=parse_hosts("a:1, b:2"))

    assert cluster.as_dict() == {"worker": ["a:1", "b:2"]}


def test_task_lines_set_tf_config_before_the_command():
    lines = task_lines(_pss(), strategy="parameter_server", command=COMMAND + ["--x=a b"])

    assert len(lines) == 4
    for line, task in zip(
        lines, [("chief", 0), ("worker", 0), ("worker", 1), ("ps", 0)], strict=False
    ):
        words = shlex.split(line)
        assert words[0].startswith("TF_CONFIG=")
        config = json.loads(words[0][len("TF_CONFIG=") :])
        assert config == {"cluster": _pss().as_dict(), "task": {"type": task[0], "index": task[1]}}
        assert words[1:] == COMMAND + ["--x=a b"]


def test_task_lines_with_gpus_number_each_hosts_gpus_from_0():
    lines = task_lines(_pss(), strategy="parameter_server", command=["t"], gpus_per_worker=1)

    assert [shlex.split(line)[1] for line in lines] == [
        "CUDA_VISIBLE_DEVICES=",
        "CUDA_VISIBLE_DEVICES=0",
        "CUDA_VISIBLE_DEVICES=1",
        "CUDA_VISIBLE_DEVICES=",
    ]


def test_env_files_can_be_sourced(tmp_path):
    files = env_files(_pss(), strategy="parameter_server", command=COMMAND)

    assert list(files) == ["chief-0.env", "worker-0.env", "worker-1.env", "ps-0.env"]
    path = tmp_path / "worker-1.env"
    path.write_text(files["worker-1.env"])
    assert files["worker-1.env"].startswith(
        "# Task worker:1 of a parameter_server cluster; run on host c:\n"
    )
    script = f"set -a; . {path}; set +a; printenv TF_CONFIG"
    shown = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(shown)["task"] == {"type": "worker", "index": 1}


def test_cluster_spec_file_and_tasks_on_host():
    cluster = read_cluster_spec(
        json.dumps({"ps": ["p:1"], "worker": ["w:1", "w:2"], "chief": ["c:1"]}),
        source="spec.json",
        strategy="parameter_server",
    )

    assert tasks_on_host(cluster, "w") == [("worker", 0), ("worker", 1)]
    assert tasks_on_host(cluster, "nowhere") == []


def test_warning_names_every_open_port():
    warning = open_ports_warning(_pss())

    assert warning.startswith(
        "warning: TensorFlow's gRPC servers listen on all network "
        "interfaces without authentication; this cluster opens "
        "a:2222 (chief:0), c:2222 (worker:0), c:2223 (worker:1), "
        "b:2222 (ps:0)."
    )


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: parse_hosts("a:2222,b"), r"hosts entry 'b' of 'a:2222,b' is not 'host:port'"),
        (lambda: parse_hosts("a:0"), r"hosts entry 'a:0' .* port in 1..65535"),
        (
            lambda: plan_hosts_cluster(strategy="parameter_server", hosts=["a:1", "b:1"], num_ps=1),
            r"needs a chief, at least 1 ps and at least 1 worker address, so at least 3; got 2",
        ),
        (
            lambda: plan_hosts_cluster(strategy="multi_worker", hosts=["a:1"], num_ps=1),
            r"num_ps \(1\) must be 0 for strategy 'multi_worker'",
        ),
        (
            lambda: plan_hosts_cluster(strategy="multi_worker", hosts=["a:1", "a:1"]),
            r"Address 'a:1' is used by both worker:0 and worker:1",
        ),
        (
            lambda: plan_hosts_cluster(strategy="mirrored", hosts=["a:1"]),
            r"Unknown strategy 'mirrored' for a multi-host cluster. Expected one of: multi_worker, "
            r"parameter_server.",
        ),
        (
            lambda: read_cluster_spec("{", source="s.json", strategy="multi_worker"),
            r"Cluster spec s.json is not valid JSON \(Expecting property name",
        ),
        (
            lambda: read_cluster_spec("[" * 100_000, source="s.json", strategy="multi_worker"),
            r"Cluster spec s.json is nested too deeply to be a cluster spec",
        ),
        (
            lambda: read_cluster_spec("[]", source="s.json", strategy="multi_worker"),
            r"Cluster spec s.json must be a JSON object of job name to 'host:port' lists",
        ),
        (
            lambda: read_cluster_spec(
                '{"worker": ["a:1"], "ps": ["b:1"]}', source="s.json", strategy="parameter_server"
            ),
            r"Cluster jobs \(worker, ps\) do not fit strategy 'parameter_server', which needs the "
            r"jobs \{chief, worker, ps\}",
        ),
    ],
)
def test_errors_name_the_value_and_the_fix(call, match):
    with pytest.raises(LaunchError, match=match):
        call()


def test_readme_multi_host_example_is_what_the_cli_prints(capsys):
    argv, expected = readme_example("python -m launch hosts", doc="docs/deployment.md")

    assert main(argv) == 0

    captured = capsys.readouterr()
    assert captured.out == expected
    assert "this cluster opens node1:2222 (worker:0), node2:2222 (worker:1)" in captured.err


def test_cli_write_env(tmp_path, capsys):
    spec = tmp_path / "cluster.json"
    spec.write_text(json.dumps({"chief": ["a:1"], "worker": ["b:1"]}))

    assert (
        main(
            [
                "hosts",
                "--strategy=multi_worker",
                f"--cluster_spec={spec}",
                f"--write_env={tmp_path / 'env'}",
                "--",
                "train",
            ]
        )
        == 0
    )

    assert sorted(path.name for path in (tmp_path / "env").iterdir()) == [
        "chief-0.env",
        "worker-0.env",
    ]
    assert "launch: wrote " in capsys.readouterr().err


def test_cli_this_host_runs_only_that_hosts_tasks(capsys):
    ports = free_ports(3)
    hosts = f"localhost:{ports[0]},127.0.0.1:{ports[1]},localhost:{ports[2]}"
    code = "import json, os; print('task', json.loads(os.environ['TF_CONFIG'])['task']['index'])"

    assert (
        main(
            [
                "hosts",
                "--strategy=multi_worker",
                f"--hosts={hosts}",
                "--this_host=localhost",
                "--",
                PY,
                "-c",
                code,
            ]
        )
        == 0
    )

    captured = capsys.readouterr()
    assert "[worker:0] task 0" in captured.out and "[worker:2] task 2" in captured.out
    assert "worker:1" not in captured.out
    assert (
        f"launch: starting worker:0 at localhost:{ports[0]}, worker:2 at localhost:"
        f"{ports[2]} of a multi_worker cluster of 3 tasks; compute tasks get "
    ) in captured.err
    assert "network:" not in captured.err  # The cluster spans hosts: no namespace for it.


def test_cli_this_host_with_only_servers_runs_them_as_ordinary_tasks(capsys):
    ports = free_ports(3)
    hosts = f"127.0.0.1:{ports[0]},localhost:{ports[1]},localhost:{ports[2]}"

    assert (
        main(
            [
                "hosts",
                "--strategy=parameter_server",
                "--num_ps=1",
                f"--hosts={hosts}",
                "--this_host=localhost",
                "--",
                PY,
                "-c",
                "print('served')",
            ]
        )
        == 0
    )

    out = capsys.readouterr().out
    assert "[worker:0] served" in out and "[ps:0] served" in out


@pytest.mark.parametrize(
    "argv, match",
    [
        (
            ["hosts", "--strategy=multi_worker", "--", "x"],
            "one of the arguments --hosts --cluster_spec is required",
        ),
        (
            ["hosts", "--strategy=multi_worker", "--hosts=a:1", "--this_host=b", "--", "x"],
            "No task of the cluster has host 'b'; pass --this_host= one of: a.",
        ),
        (
            ["hosts", "--strategy=multi_worker", "--cluster_spec=/no/such.json", "--", "x"],
            "Cannot read --cluster_spec=/no/such.json",
        ),
        (
            [
                "hosts",
                "--strategy=multi_worker",
                "--hosts=a:1",
                "--write_env=d",
                "--this_host=a",
                "--",
                "x",
            ],
            "argument --this_host: not allowed with argument --write_env",
        ),
    ],
)
def test_cli_errors_exit_2(capsys, argv, match):
    assert main(argv) == 2

    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("launch: error: ") and match in err
