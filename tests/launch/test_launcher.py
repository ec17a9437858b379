"""Tests for launch.launcher.run_launch: a plan run for real (tiny Python tasks on loopback)."""

import io
import sys

import pytest

from launch import LaunchError, LaunchSpec, run_launch

PY = sys.executable


def test_a_failed_attempt_is_planned_anew_and_run_again(tmp_path):
    marker = tmp_path / "failed_once"
    code = (f"import os, pathlib, sys; m = pathlib.Path({str(marker)!r}); "
            "first = not m.exists(); m.touch(); print('port', os.environ['TF_CONFIG'][-40:]); "
            "sys.exit(3 if first else 0)")
    lines, output = [], io.StringIO()
    spec = LaunchSpec(strategy="multi_worker", command=[PY, "-c", code], base_env={},
                      isolate_network=False)

    report = run_launch(spec, announce=lines.append, output=output, max_restarts=1)

    assert report.exit_code == 0 and report.restarts == 1
    assert report.attempts[0].exit_code == 3
    assert len(lines) == 2 and lines[0] != lines[1]  # Fresh free ports for the second attempt.
    for line in lines:
        assert line.startswith("starting multi_worker cluster: worker:0 at localhost:")
        assert "; network: NOT isolated (turned off with --noisolate_network); " in line
    assert "restarting the cluster (1/1)" in output.getvalue()


def test_a_cluster_not_on_loopback_says_why_it_is_not_isolated():
    lines = []
    spec_elsewhere = LaunchSpec(strategy="multi_worker", command=[PY, "-c", "pass"],
                                base_env={}, host="node9", ports=[1])

    assert run_launch(spec_elsewhere, announce=lines.append, output=io.StringIO()).exit_code == 0

    assert lines[0].endswith("network: NOT isolated (the cluster's addresses are not on "
                             "loopback; only a loopback cluster can be isolated); TensorFlow "
                             "listens on all interfaces without authentication on ports 1: "
                             "run only on a trusted network.")


def test_a_wrong_spec_raises_before_anything_starts():
    with pytest.raises(LaunchError, match=r"num_ps \(0\) must be at least 1"):
        run_launch(LaunchSpec(strategy="parameter_server", command=["x"]))
