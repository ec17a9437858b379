"""Tests for Slurm: hostlists, TF_CONFIG from SLURM_*, the sbatch script, the task entry."""

import json
import os
import subprocess
import sys
import time

import pytest
from readme_examples import readme_example

from launch import LaunchError
from launch.__main__ import main
from launch.slurm.hostlist import expand_hostlist, expand_tasks_per_node
from launch.slurm.sbatch import TaskPython, sbatch_script, slurm_task_spec, task_python
from launch.slurm.task import main as task_main
from launch.slurm.task import serve_until_chief_exits, task_env

PY = sys.executable


@pytest.mark.parametrize(
    "text, expected",
    [
        ("node1", ("node1",)),
        ("a,b", ("a", "b")),
        ("node[01-03,07]", ("node01", "node02", "node03", "node07")),
        ("node[8-10]", ("node8", "node9", "node10")),
        ("gpu-a[1-2],cpu5", ("gpu-a1", "gpu-a2", "cpu5")),
        ("rack[1-2]-n[1-2]", ("rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2")),
        ("n[009-011]x", ("n009x", "n010x", "n011x")),
        ("localhost", ("localhost",)),
    ],
)
def test_expand_hostlist(text, expected):
    assert expand_hostlist(text) == expected


@pytest.mark.parametrize(
    "text, why",
    [
        ("node[01-", "'[' without ']'"),
        ("node01]", "']' without '['"),
        ("node[1-[2]]", "nested '['"),
        ("node[3-1]", "range '3-1' runs backwards"),
        ("node[a-b]", "range 'a-b' is not N or N-M with digits"),
        ("a,,b", "a host name is empty"),
        ("", "it is empty"),
        ("a b", "it contains whitespace"),
    ],
)
def test_expand_hostlist_errors_name_the_value_and_the_syntax(text, why):
    with pytest.raises(LaunchError) as error:
        expand_hostlist(text)
    assert str(error.value) == (
        f"nodelist {text!r} is not valid Slurm hostlist syntax ({why}); expected e.g. "
        "'node[01-03,07]' or 'node1,node2', as in SLURM_JOB_NODELIST."
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2", (2,)),
        ("2(x3),1", (2, 2, 2, 1)),
        ("1,4(x2)", (1, 4, 4)),
    ],
)
def test_expand_tasks_per_node(text, expected):
    assert expand_tasks_per_node(text) == expected


@pytest.mark.parametrize("text", ["", "0", "2(x0)", "2x3", "a"])
def test_expand_tasks_per_node_errors(text):
    with pytest.raises(LaunchError, match=r"tasks per node .* is not valid Slurm syntax"):
        expand_tasks_per_node(text)


def _environ(rank, *, ntasks=4, nodelist="node[01-02]", per_node="2(x2)", **extra):
    environ = {
        "SLURM_PROCID": str(rank),
        "SLURM_NTASKS": str(ntasks),
        "SLURM_STEP_NODELIST": nodelist,
        "SLURM_STEP_TASKS_PER_NODE": per_node,
    }
    environ.update(extra)
    return environ


def test_multi_worker_tasks_fill_nodes_in_block_order():
    specs = [
        slurm_task_spec(strategy="multi_worker", environ=_environ(rank), port_base=5000)
        for rank in range(4)
    ]

    expected = {"worker": ["node01:5000", "node01:5001", "node02:5000", "node02:5001"]}
    for rank, spec in enumerate(specs):
        assert json.loads(spec.tf_config()) == {
            "cluster": expected,
            "task": {"type": "worker", "index": rank},
        }
    assert [spec.host for spec in specs] == ["node01", "node01", "node02", "node02"]
    assert specs[2].node_tasks == (("worker", 2), ("worker", 3))


def test_parameter_server_layout_chief_then_ps_then_workers():
    specs = [
        slurm_task_spec(
            strategy="parameter_server",
            num_ps=1,
            port_base=5000,
            environ=_environ(rank, SLURM_LOCALID=str(rank % 2)),
        )
        for rank in range(4)
    ]

    assert specs[0].cluster.as_dict() == {
        "chief": ["node01:5000"],
        "worker": ["node02:5000", "node02:5001"],
        "ps": ["node01:5001"],
    }
    assert [(spec.task_type, spec.index) for spec in specs] == [
        ("chief", 0),
        ("ps", 0),
        ("worker", 0),
        ("worker", 1),
    ]
    assert specs[1].node_tasks == (("chief", 0), ("ps", 0))


def test_job_nodelist_and_even_split_when_step_variables_are_missing():
    environ = {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "n[1-2]"}

    spec = slurm_task_spec(strategy="multi_worker", environ=environ)

    assert spec.cluster.as_dict() == {"worker": ["n1:23456", "n2:23456"]}
    assert (spec.task_type, spec.index, spec.host) == ("worker", 1, "n2")


def test_uneven_tasks_per_node():
    spec = slurm_task_spec(
        strategy="multi_worker",
        port_base=7000,
        environ=_environ(2, ntasks=3, nodelist="a,b", per_node="2,1"),
    )

    assert spec.cluster.as_dict() == {"worker": ["a:7000", "a:7001", "b:7000"]}


def test_mirrored_is_one_task_without_tf_config():
    spec = slurm_task_spec(
        strategy="mirrored", environ=_environ(0, ntasks=1, nodelist="gpu7", per_node="1")
    )

    assert spec.cluster is None and spec.tf_config() is None and spec.host == "gpu7"


@pytest.mark.parametrize(
    "strategy, environ, kwargs, match",
    [
        (
            "multi_worker",
            {},
            {},
            r"SLURM_PROCID is not set; run `python -m launch.slurm.task` "
            r"inside a Slurm step \(srun\)",
        ),
        (
            "multi_worker",
            _environ("x"),
            {},
            r"SLURM_PROCID \('x'\) must be an integer of at least 0",
        ),
        ("multi_worker", _environ(4), {}, r"SLURM_PROCID \(4\) must be below SLURM_NTASKS \(4\)"),
        (
            "multi_worker",
            _environ(0, nodelist="node[01-"),
            {},
            r"nodelist 'node\[01-' is not valid Slurm hostlist syntax",
        ),
        ("multi_worker", _environ(0, per_node="3,2"), {}, r"Tasks per node \(3, 2\) do not match"),
        (
            "multi_worker",
            _environ(1, SLURM_LOCALID="0"),
            {},
            r"SLURM_LOCALID \('0'\) is not 1, .* run srun with --distribution=block",
        ),
        (
            "parameter_server",
            _environ(0, ntasks=2, per_node="1(x2)"),
            {"num_ps": 1},
            r"needs a chief, at least 1 ps and at least 1 worker, so at least 3 tasks, not 2",
        ),
        ("multi_worker", _environ(0), {"num_ps": 1}, r"num_ps \(1\) must be 0 for strategy"),
        ("mirrored", _environ(0), {}, r"Strategy 'mirrored' runs as one task on one node, not 4"),
        (
            "mirorred",
            _environ(0),
            {},
            r"Unknown strategy 'mirorred' for a Slurm job. Expected "
            r"one of: mirrored, multi_worker, parameter_server.",
        ),
        ("multi_worker", _environ(0), {"port_base": 65535}, r"port_base \(65535\) plus up to 1"),
    ],
)
def test_slurm_task_spec_errors(strategy, environ, kwargs, match):
    with pytest.raises(LaunchError, match=match):
        slurm_task_spec(strategy=strategy, environ=environ, **kwargs)


def test_task_env_sets_tf_config_and_divides_the_node_gpus():
    specs = [
        slurm_task_spec(strategy="parameter_server", num_ps=1, environ=_environ(rank))
        for rank in range(4)
    ]
    base = {"CUDA_VISIBLE_DEVICES": "0,1", "TF_CONFIG": "stale", "HOME": "/h"}

    envs = [
        task_env(
            spec, strategy="parameter_server", environ=base, gpus_per_worker=1, gpu_ids=["0", "1"]
        )
        for spec in specs
    ]

    assert [env["CUDA_VISIBLE_DEVICES"] for env in envs] == ["", "", "0", "1"]
    assert [json.loads(env["TF_CONFIG"])["task"]["type"] for env in envs] == [
        "chief",
        "ps",
        "worker",
        "worker",
    ]
    assert base["TF_CONFIG"] == "stale" and all(env["HOME"] == "/h" for env in envs)


def test_task_env_of_mirrored_drops_tf_config():
    spec = slurm_task_spec(
        strategy="mirrored", environ=_environ(0, ntasks=1, per_node="1", nodelist="n1")
    )

    env = task_env(spec, strategy="mirrored", environ={"TF_CONFIG": "{}", "A": "1"})

    assert "TF_CONFIG" not in env and env["A"] == "1"


def test_slurm_task_execs_the_command_with_its_tf_config():
    code = "import json, os; print('task', json.loads(os.environ['TF_CONFIG'])['task'])"
    environ = dict(os.environ, **_environ(3, nodelist="localhost,127.0.0.1"))

    done = subprocess.run(
        [
            PY,
            "-m",
            "launch.slurm.task",
            "--strategy=multi_worker",
            "--port_base=6000",
            "--",
            PY,
            "-c",
            code,
        ],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "task {'type': 'worker', 'index': 3}"
    assert "SLURM_PROCID 3 on 127.0.0.1 is worker:3 of a multi_worker cluster." in done.stderr


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--strategy=multi_worker"], "No command to run: put it after '--'"),
        (["--strategy=bogus", "--", "x"], "argument --strategy: invalid choice: 'bogus'"),
        (
            ["--strategy=multi_worker", "--gpus_per_worker=-1", "--", "x"],
            r"gpus_per_worker (-1) must be an integer of at least 0",
        ),
        (["--strategy=multi_worker", "--", "x"], "SLURM_PROCID is not set"),
    ],
)
def test_slurm_task_errors_are_one_line_and_exit_2(monkeypatch, capsys, argv, match):
    for name in list(os.environ):
        if name.startswith("SLURM_"):
            monkeypatch.delenv(name)

    assert task_main(argv) == 2

    err = capsys.readouterr().err
    assert err.startswith("launch.slurm.task: error: ") and err.count("\n") == 1
    assert match in err


def test_server_is_stopped_once_the_chief_port_closes(capsys):
    states = iter([False, True, True, False, False, False])  # Up, then gone for 3 checks.
    start = time.monotonic()

    code = serve_until_chief_exits(
        [PY, "-c", "import time; time.sleep(60)"],
        dict(os.environ),
        "chief:1",
        poll_interval=0.01,
        is_open=lambda address: next(states, False),
    )

    assert code == 0
    assert time.monotonic() - start < 20
    assert "the chief at chief:1 has finished; stopping this server." in capsys.readouterr().err


def test_server_that_exits_by_itself_returns_its_code():
    code = serve_until_chief_exits(
        [PY, "-c", "raise SystemExit(5)"],
        dict(os.environ),
        "chief:1",
        poll_interval=0.01,
        is_open=lambda address: False,
    )

    assert code == 5


def test_sbatch_script_for_parameter_server():
    script = sbatch_script(
        strategy="parameter_server",
        nodes=3,
        tasks_per_node=2,
        num_ps=2,
        command=["python", "-m", "tfdist.train", "--note=a b"],
        partition="gpu",
        time="2-00:00:00",
        gpus_per_node=4,
        gpus_per_worker=2,
        job_name="pss",
        port_base=30000,
        python=TaskPython("/opt/venv/bin/python", "named by --python", replaces_command=True),
    )

    lines = script.splitlines()
    assert lines[:7] == [
        "#!/bin/bash",
        "#SBATCH --job-name=pss",
        "#SBATCH --nodes=3",
        "#SBATCH --ntasks-per-node=2",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=2-00:00:00",
    ]
    assert "# task 0 is the chief, tasks 1-2 the ps, the rest workers." in lines
    assert "ports 30000-30001" in script
    assert lines[-1] == (
        "srun --distribution=block --kill-on-bad-exit=1 /opt/venv/bin/python -m "
        "launch.slurm.task --strategy=parameter_server --port_base=30000 --num_ps=2 "
        "--gpus_per_worker=2 -- /opt/venv/bin/python -m tfdist.train '--note=a b'"
    )


def _which(found):
    return lambda name: {"python": found, "python3": found}.get(name)


@pytest.mark.parametrize(
    "command, python, path, source, replaces",
    [
        (
            ["python", "-m", "tfdist.train"],
            None,
            "/venv/bin/python",
            "the command's 'python', found on PATH when this script was written",
            True,
        ),
        (
            ["python3.11", "train.py"],
            None,
            "/usr/bin/python3.11",
            "the command's 'python3.11', found on PATH when this script was written",
            True,
        ),
        (
            ["/opt/env/bin/python3", "-m", "tfdist.train"],
            None,
            "/opt/env/bin/python3",
            "the command's own interpreter",
            False,
        ),
        (
            ["tfdist-train", "--epochs=1"],
            None,
            "/writer/bin/python",
            "the interpreter that wrote this script (the command does not start with python)",
            False,
        ),
        (
            ["python", "-m", "tfdist.train"],
            "/nodes/bin/python",
            "/nodes/bin/python",
            "named by --python",
            True,
        ),
        (["./run.sh"], "/nodes/bin/python", "/nodes/bin/python", "named by --python", False),
    ],
)
def test_task_python_is_fixed_when_the_script_is_written(command, python, path, source, replaces):
    which = {"python": "/venv/bin/python", "python3.11": "/usr/bin/python3.11"}.get

    chosen = task_python(command, python=python, which=which, default="/writer/bin/python")

    assert chosen == TaskPython(path, source, replaces_command=replaces)


@pytest.mark.parametrize(
    "command, python, match",
    [
        (
            ["python", "x.py"],
            None,
            r"The command's 'python' is not on PATH here, so the script "
            r"cannot name its interpreter; pass --python=/path/to/python",
        ),
        (
            ["python", "x.py"],
            "venv/bin/python",
            r"python \('venv/bin/python'\) must be an "
            r"absolute path without spaces",
        ),
    ],
)
def test_task_python_errors(command, python, match):
    with pytest.raises(LaunchError, match=match):
        task_python(command, python=python, which=lambda name: None, default="/x/python")


def test_script_runs_helper_and_command_with_the_resolved_interpreter():
    python = task_python(
        ["python", "-m", "tfdist.train"], which=_which("/venv/bin/python"), default="/other/python"
    )

    script = sbatch_script(
        strategy="multi_worker",
        nodes=1,
        tasks_per_node=2,
        command=["python", "-m", "tfdist.train"],
        python=python,
    )

    lines = script.splitlines()
    assert (
        "# Interpreter: /venv/bin/python" in lines
        and "# (the command's 'python', found "
        "on PATH when this script was written); it runs the task helper and the "
        "command."
        in lines
    ), script
    assert lines[-1].endswith(
        "=1 /venv/bin/python -m launch.slurm.task "
        "--strategy=multi_worker --port_base=23456 -- "
        "/venv/bin/python -m tfdist.train"
    ), lines[-1]


def test_cli_names_the_interpreter_of_the_command(capsys):
    assert (
        main(
            [
                "slurm",
                "--strategy=multi_worker",
                "--nodes=1",
                "--tasks_per_node=2",
                "--",
                PY,
                "-m",
                "tfdist.train",
            ]
        )
        == 0
    )

    srun = capsys.readouterr().out.splitlines()[-1]
    assert srun.startswith(
        f"srun --distribution=block --kill-on-bad-exit=1 {PY} -m launch.slurm.task "
    ), srun
    assert srun.endswith(f"-- {PY} -m tfdist.train"), srun


def test_cli_python_flag_names_the_nodes_interpreter(capsys):
    assert (
        main(
            [
                "slurm",
                "--strategy=multi_worker",
                "--nodes=1",
                "--tasks_per_node=2",
                "--python=/nodes/venv/bin/python",
                "--",
                "python",
                "-m",
                "tfdist.train",
            ]
        )
        == 0
    )

    out = capsys.readouterr().out
    assert "# (named by --python); it runs the task helper and the command." in out
    assert out.splitlines()[-1].endswith(
        "/nodes/venv/bin/python -m launch.slurm.task --strategy=multi_worker "
        "--port_base=23456 -- /nodes/venv/bin/python -m tfdist.train"
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(nodes=0), r"nodes \(0\) must be an integer of at least 1; pass --nodes=1"),
        (dict(strategy="mirrored"), r"Strategy 'mirrored' runs as one task on one node, not 4"),
        (dict(strategy="parameter_server"), r"with num_ps \(0\) needs a chief"),
        (
            dict(gpus_per_worker=1),
            r"gpus_per_worker \(1\) x tasks_per_node \(2\) is more than "
            r"gpus_per_node \(0\); pass --gpus_per_node=2",
        ),
        (dict(time="1 hour"), r"time \('1 hour'\) is not a Slurm time limit; use MINUTES"),
        (dict(partition="a b"), r"partition \('a b'\) must be one word"),
        (dict(command=[]), r"command \(\[\]\) must be a non-empty list of strings"),
        (dict(port_base=0), r"port_base \(0\) plus 1 must be a port in 1..65535"),
    ],
)
def test_sbatch_script_errors(kwargs, match):
    arguments = dict(strategy="multi_worker", nodes=2, tasks_per_node=2, command=["x"])
    arguments.update(kwargs)

    with pytest.raises(LaunchError, match=match):
        sbatch_script(**arguments)


def test_readme_slurm_example_is_what_the_cli_prints(capsys):
    argv, expected = readme_example("python -m launch slurm", doc="docs/deployment.md")

    assert main(argv) == 0

    assert capsys.readouterr().out == expected


def test_cli_writes_the_script_to_output(tmp_path, capsys):
    path = tmp_path / "train.sbatch"

    assert (
        main(
            [
                "slurm",
                "--strategy=mirrored",
                "--nodes=1",
                "--tasks_per_node=1",
                f"--output={path}",
                "--",
                "python",
                "-m",
                "tfdist.train",
            ]
        )
        == 0
    )

    assert path.read_text().startswith("#!/bin/bash\n#SBATCH --job-name=tfdist\n")
    assert capsys.readouterr().err == f"launch: wrote {path}\n"


@pytest.mark.parametrize(
    "argv, match",
    [
        (
            ["slurm", "--strategy=multi_worker", "--nodes=2", "--", "x"],
            "the following arguments are required: --tasks_per_node (see --help).",
        ),
        (
            ["slurm", "--strategy=multi_worker", "--nodes=2", "--tasks_per_node=1"],
            "No command to launch: put it after '--'",
        ),
        (
            ["slurm", "--strategy=mirrored", "--nodes=2", "--tasks_per_node=1", "--", "x"],
            "Strategy 'mirrored' runs as one task on one node, not 2; pass --nodes=1",
        ),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(capsys, argv, match):
    assert main(argv) == 2

    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("launch: error: ") and match in captured.err


def test_slurm_task_imports_no_tensorflow_or_numpy():
    code = (
        "import sys, launch.slurm.task, launch.k8s.tfjob, launch.hosts; "
        "print(sorted(m for m in ('tensorflow', 'numpy', 'yaml') if m in sys.modules))"
    )

    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout

    assert out.strip() == "[]"
