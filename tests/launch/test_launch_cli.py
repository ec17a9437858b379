"""Tests for `python -m launch`: argument errors, runs, and signal forwarding."""

import os
import pathlib
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from launch import plan_launch, tfdist_server_command
from launch.__main__ import _parser, local_spec, main

ROOT = pathlib.Path(__file__).resolve().parents[2]
PY = sys.executable
USER = ("python", "my_train.py")
PSS = ["--strategy=parameter_server", "--num_workers=2", "--num_ps=1"]


@pytest.mark.parametrize(
    "argv, match",
    [
        (
            ["--strategy=mirorred", "--num_workers=2", "--", PY],
            "Unknown strategy 'mirorred' for a local cluster. "
            "Expected one of: multi_worker, parameter_server.",
        ),
        (
            ["--strategy=parameter_server", "--num_workers=2", "--", PY],
            "num_ps (0) must be at least 1 for strategy 'parameter_server'; pass --num_ps=1.",
        ),
        (["--strategy=multi_worker", "--num_workers=2"], "No command to launch: put it after '--'"),
        (["--strategy=multi_worker", "--num_workers=2", "--"], "No command to launch"),
        (["--num_workers=2", "--", PY], "the following arguments are required: --strategy"),
        (
            ["--strategy=multi_worker", "--num_workers=two", "--", PY],
            "argument --num_workers: invalid int value: 'two' (see --help).",
        ),
        (
            ["--strategy=multi_worker", "--num_workers=1", "--stop_timeout=0", "--", PY],
            "argument --stop_timeout: '0' is not a positive number of seconds",
        ),
        (
            ["--strategy=multi_worker", "--num_workers=1", "--bogus", "--", PY],
            "unrecognized arguments: --bogus",
        ),
        (
            ["--strategy=multi_worker", "--num_workers=2", "--min_workers=0", "--", PY],
            "argument --min_workers: '0' is not an integer of at least 1",
        ),
        (
            ["--strategy=multi_worker", "--num_workers=2", "--max_restarts=-1", "--", PY],
            "argument --max_restarts: '-1' is not an integer of at least 0",
        ),
        (
            ["--strategy=multi_worker", "--num_workers=2", "--min_workers=3", "--", PY],
            "min_workers (3) must be at most num_workers (2); pass --min_workers=2 or fewer.",
        ),
        (
            [*PSS, "--min_workers=1", "--", PY],
            "min_workers (1) is for strategy 'multi_worker', not 'parameter_server'",
        ),
        ([], "the following arguments are required: --strategy, --num_workers (see --help)."),
        (
            ["--strategy=multi_worker", "--num_workers=2", PY, "train.py"],
            f"argument SUB-COMMAND: invalid choice: {PY!r} (choose from 'hosts', 'slurm', "
            "'k8s'); your COMMAND goes after '--' (see --help).",
        ),
        (
            ["--num_workers=2", "hosts", "--strategy=multi_worker", "--hosts=a:1", "--", PY],
            "the sub-command 'hosts' must come first: its flags follow it, e.g. python -m "
            "launch hosts --strategy=multi_worker ... -- COMMAND (see --help).",
        ),
        (
            ["k8s", "--strategy=multi_worker", "--image=i", "--max_restarts=1", "--", PY],
            "unrecognized arguments: --max_restarts=1 (see --help).",
        ),
    ],
)
def test_argument_errors_are_one_line_and_exit_2(capsys, argv, match):
    assert main(argv) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("launch: error: ")
    assert match in captured.err
    assert "Traceback" not in captured.err


def test_runs_the_command_on_every_worker(capsys):
    code = "import json, os; print(json.loads(os.environ['TF_CONFIG'])['task'])"

    assert main(["--strategy=multi_worker", "--num_workers=2", "--", PY, "-c", code]) == 0

    captured = capsys.readouterr()
    assert "[worker:0] {'type': 'worker', 'index': 0}" in captured.out
    assert "[worker:1] {'type': 'worker', 'index': 1}" in captured.out
    assert captured.err.startswith("launch: starting multi_worker cluster: worker:0 at localhost:")


def test_min_workers_goes_on_with_the_workers_left(capsys):
    code = (
        "import json, os, sys; c = json.loads(os.environ['TF_CONFIG']); "
        "n = len(c['cluster']['worker']); sys.exit(7 if c['task']['index'] == 2 else 0)"
    )

    assert (
        main(
            [
                "--strategy=multi_worker",
                "--num_workers=3",
                "--max_restarts=1",
                "--min_workers=2",
                "--",
                PY,
                "-c",
                code,
            ]
        )
        == 0
    )

    captured = capsys.readouterr()
    assert "restarting the cluster (1/1)" in captured.out
    assert "going on without it with 2 of 3 workers (--min_workers=2)" in captured.out
    assert captured.err.count("launch: starting multi_worker cluster") == 3


def test_parameter_server_stops_servers_after_the_chief(capsys):
    code = textwrap.dedent("""
        import json, os, time
        if json.loads(os.environ['TF_CONFIG'])['task']['type'] == 'chief':
            print('chief done')
        else:
            time.sleep(60)
        """)

    start = time.monotonic()
    exit_code = main([*PSS, "--servers=command", "--", PY, "-c", code])

    assert exit_code == 0
    assert time.monotonic() - start < 10
    assert "[chief:0] chief done" in capsys.readouterr().out


def test_max_restarts_restarts_a_parameter_server_worker_in_place(capsys, tmp_path):
    # worker:0 dies at its first start; the chief ends once it has started again.
    starts = tmp_path / "starts"
    code = textwrap.dedent(f"""
        import json, os, pathlib, time
        task, starts = json.loads(os.environ['TF_CONFIG'])['task'], pathlib.Path({str(starts)!r})
        count = lambda: starts.read_text().count('start') if starts.exists() else 0
        if task['type'] == 'worker' and task['index'] == 0:
            with starts.open('a') as f:
                f.write('start\\n')
            if count() == 1:
                os.kill(os.getpid(), 9)
        while task['type'] == 'chief' and count() < 2:
            time.sleep(0.01)
        print('chief done' if task['type'] == 'chief' else 'serving', flush=True)
        time.sleep(0 if task['type'] == 'chief' else 60)
        """)

    exit_code = main([*PSS, "--servers=command", "--max_restarts=1", "--", PY, "-c", code])

    captured = capsys.readouterr()
    assert exit_code == 0, captured.err
    assert "[worker:0] launch: worker:0 exited with code -9; restarting it (1/1)" in captured.out
    assert "[chief:0] chief done" in captured.out
    assert "restarting the cluster" not in captured.out
    assert captured.err.count("launch: starting parameter_server cluster") == 1


def _planned_argv(flags):
    spec = local_spec(_parser().parse_args(flags), list(USER), {"CUDA_VISIBLE_DEVICES": ""})
    return {launch.name: launch.argv for launch in plan_launch(spec).launches}


@pytest.mark.parametrize(
    "flags, servers",
    [
        (PSS, tfdist_server_command()),
        ([*PSS, "--servers=tfdist"], tfdist_server_command()),
        ([*PSS, "--servers=command"], USER),
    ],
    ids=["default", "tfdist", "command"],
)
def test_parameter_server_runs_the_command_on_the_chief_and_servers_elsewhere(flags, servers):
    argv = _planned_argv(flags)

    assert argv == {"chief:0": USER, "worker:0": servers, "worker:1": servers, "ps:0": servers}
    assert tfdist_server_command() == (PY, "-m", "tfdist.server")


def test_multi_worker_runs_the_command_on_every_task_whatever_servers_says():
    for flags in (
        ["--strategy=multi_worker", "--num_workers=2"],
        ["--strategy=multi_worker", "--num_workers=2", "--servers=tfdist"],
    ):
        assert _planned_argv(flags) == {"worker:0": USER, "worker:1": USER}


def test_help_documents_servers(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])

    assert exited.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--servers {tfdist,command}" in help_text
    assert (
        "'tfdist' (default): tfdist's server (python -m tfdist.server, with the launcher's "
        "Python), so COMMAND runs on the chief only"
    ) in help_text
    assert "'command': COMMAND runs on every task" in help_text


def test_bad_servers_value_is_a_usage_error(capsys):
    assert main([*PSS, "--servers=mine", "--", PY]) == 2
    assert "argument --servers: invalid choice: 'mine'" in capsys.readouterr().err


def test_failure_prints_the_summary_and_returns_the_exit_code(capsys):
    code = (
        "import json, os, sys; sys.exit(json.loads(os.environ['TF_CONFIG'])['task']['index'] * 3)"
    )

    assert main(["--strategy=multi_worker", "--num_workers=2", "--", PY, "-c", code]) == 3

    err = capsys.readouterr().err
    assert "task worker:1 failed with exit code 3 (root cause)" in err


def _read_lines(stream, lines):
    for line in stream:
        lines.put(line.rstrip("\n"))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_is_forwarded_to_every_task(signum):
    child = textwrap.dedent("""
        import signal, sys, time
        def stop(signum, frame):
            print('got', signal.Signals(signum).name, flush=True)
            sys.exit(0)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        print('ready', flush=True)
        time.sleep(60)
        """)
    launcher = subprocess.Popen(
        [PY, "-m", "launch", "--strategy=multi_worker", "--num_workers=2", "--", PY, "-c", child],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = queue.Queue()
    threading.Thread(target=_read_lines, args=(launcher.stdout, lines), daemon=True).start()
    seen = []
    try:
        deadline = time.monotonic() + 10
        while sum(line.endswith("] ready") for line in seen) < 2:
            seen.append(lines.get(timeout=max(0.01, deadline - time.monotonic())))

        launcher.send_signal(signum)
        exit_code = launcher.wait(timeout=10)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    launcher.stdout.close()
    while not lines.empty():
        seen.append(lines.get())

    name = signal.Signals(signum).name
    assert exit_code == 128 + signum
    assert f"[worker:0] got {name}" in seen
    assert f"[worker:1] got {name}" in seen
    assert f"launch interrupted by {name}; stopped 2 running tasks." in seen


def test_launch_imports_no_tensorflow_or_numpy():
    code = (
        "import sys, launch, launch.__main__; "
        "print(sorted(m for m in ('tensorflow', 'numpy') if m in sys.modules))"
    )

    out = subprocess.run(
        [PY, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout

    assert out.strip() == "[]"


# worker:1 fails once worker:0 is up; worker:0 prints a traceback when it is stopped.
_PEER_FAILS = textwrap.dedent("""
    import json, os, pathlib, signal, sys, time
    index = json.loads(os.environ['TF_CONFIG'])['task']['index']
    ready = pathlib.Path(sys.argv[1])
    if index == 1:
        while not ready.exists():
            time.sleep(0.01)
        print('worker 1 failing', flush=True)
        sys.exit(3)
    def stopped(*_):
        print('Traceback (most recent call last):', flush=True)
        sys.exit(1)
    signal.signal(signal.SIGTERM, stopped)
    ready.touch()
    time.sleep(60)
    """)


@pytest.mark.parametrize("verbose", [False, True])
def test_log_dir_keeps_what_the_terminal_leaves_out(capsys, tmp_path, verbose):
    argv = ["--strategy=multi_worker", "--num_workers=2", f"--log_dir={tmp_path / 'logs'}"]
    argv += ["--verbose"] if verbose else []

    exit_code = main([*argv, "--", PY, "-c", _PEER_FAILS, str(tmp_path / "ready")])

    captured = capsys.readouterr()
    assert exit_code == 3
    assert "[worker:1] worker 1 failing" in captured.out
    assert ("[worker:0] Traceback" in captured.out) is verbose
    attempt = tmp_path / "logs" / "attempt-1"
    assert (
        'launch: attempt 1 failed (worker:1 exit code 3: "worker 1 failing"); giving up '
        "(--max_restarts=0); "
        f"full logs: {attempt}\n" in captured.out
    )
    assert "Traceback (most recent call last):" in (attempt / "worker-0.log").read_text()
    assert "worker 1 failing" in captured.err  # The final report's tail of the root cause.
