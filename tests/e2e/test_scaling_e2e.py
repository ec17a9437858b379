"""The scaling report, run small for real: 1 and 2 multi_worker workers on digits."""

import csv
import sys

from e2e_helpers import explain, run_command


def test_scaling_report_runs_each_size_and_writes_csv_md_png(tmp_path):
    out_dir = tmp_path / "report"
    process = run_command(
        [
            sys.executable,
            "-m",
            "tfdist.scaling",
            "--workers=1,2",
            "--strategy=multi_worker",
            "--dataset=digits",
            "--epochs=2",
            f"--out_dir={out_dir}",
        ],
        timeout=300,
    )
    assert process.returncode == 0, explain(process)
    with open(out_dir / "scaling.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["workers"], r["replicas"]) for r in rows] == [("1", "1"), ("2", "2")]
    assert float(rows[0]["efficiency"]) == 1.0 and float(rows[1]["examples_per_sec"]) > 0
    assert "| workers | replicas |" in (out_dir / "scaling.md").read_text()
    assert (out_dir / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert "[worker:1]" in (out_dir / "workers_2.log").read_text()


def test_a_failed_run_exits_1_naming_its_log(tmp_path):
    process = run_command(
        [
            sys.executable,
            "-m",
            "tfdist.scaling",
            "--workers=1",
            "--model=resnet9000",
            "--epochs=2",
            f"--out_dir={tmp_path}",
        ],
        timeout=120,
    )
    assert process.returncode == 1, explain(process)
    log = tmp_path / "workers_1.log"
    assert f"the run on 1 worker(s) failed (exit code 2); see {log}." in process.stderr
    assert "Unknown model 'resnet9000'" in log.read_text()
