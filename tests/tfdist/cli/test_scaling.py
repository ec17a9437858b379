"""The scaling report from run summaries: rows, CSV, Markdown, PNG and flag mistakes."""

import csv

import pytest

from launch import plan_launch, tfdist_server_command
from tfdist.cli import scaling


def _summary(workers, examples_per_sec):
    return {
        "num_workers": workers,
        "num_replicas": workers,
        "global_batch_size": 256,
        "examples_per_sec": examples_per_sec,
        "val_accuracy": 0.9,
        "wall_seconds": 10.0,
        "startup_seconds": 4.0 + workers,
    }


SUMMARIES = [_summary(4, 20000.0), _summary(1, 10000.0), _summary(2, 16000.0)]


def test_rows_take_the_smallest_run_as_baseline():
    rows = scaling.scaling_rows(SUMMARIES)
    assert [row.workers for row in rows] == [1, 2, 4]
    assert [row.speedup for row in rows] == pytest.approx([1.0, 1.6, 2.0])
    assert [row.efficiency for row in rows] == pytest.approx([1.0, 0.8, 0.5])
    without_one = scaling.scaling_rows(SUMMARIES[:1] + SUMMARIES[2:])  # Baseline: 2 workers.
    assert without_one[1].efficiency == pytest.approx(20000 / 16000 / 2)


def test_report_files(tmp_path):
    rows = scaling.scaling_rows(SUMMARIES)
    scaling.write_csv(rows, tmp_path / "scaling.csv")
    scaling.write_markdown(
        rows, tmp_path / "scaling.md", command="python -m tfdist.scaling", strategy="multi_worker"
    )
    scaling.plot_scaling(rows, tmp_path / "scaling.png", title="test")
    with open(tmp_path / "scaling.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["workers"] for r in table] == ["1", "2", "4"] and list(table[0]) == list(
        scaling.COLUMNS
    )
    markdown = (tmp_path / "scaling.md").read_text()
    assert "| 2 | 2 | 256 | 16,000 | 1.60x | 80% | 0.9000 | 10.0 | 6.0 |" in markdown
    assert table[1]["startup_seconds"] == "6.0"
    assert "CPU cores" in markdown and "`python -m tfdist.scaling`" in markdown
    assert (tmp_path / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers=1,x"], "--workers ('1,x') must list distinct positive worker counts"),
        (["--workers=2,2"], "--workers ('2,2') must list distinct positive worker counts"),
        (["--workers=0,1"], "--workers ('0,1') must list distinct positive worker counts"),
        (["--num_workers=3"], "--num_workers=3 is set by tfdist.scaling for each run; drop it"),
    ],
)
def test_flag_mistakes_exit_2_with_one_line(tmp_path, capsys, args, message):
    assert scaling.main([*args, f"--out_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_each_size_is_planned_as_every_launch_is_with_isolation_and_gpus():
    spec = scaling.run_spec(
        2,
        strategy="parameter_server",
        num_ps=1,
        trainer_flags=["--epochs=2"],
        metrics="m.json",
        gpus_per_worker=1,
        environ={"CUDA_VISIBLE_DEVICES": "0,1"},
    )

    plan = plan_launch(spec)

    assert plan.isolate_network
    launches = {launch.name: launch for launch in plan.launches}
    assert launches["chief:0"].argv[1:] == (
        "-m",
        "tfdist.train",
        "--strategy=parameter_server",
        "--num_workers=2",
        "--num_ps=1",
        "--epochs=2",
        "--metrics_json=m.json",
    )
    assert launches["ps:0"].argv == launches["worker:1"].argv == tfdist_server_command()
    assert {name: launch.env["CUDA_VISIBLE_DEVICES"] for name, launch in launches.items()} == {
        "chief:0": "",
        "worker:0": "0",
        "worker:1": "1",
        "ps:0": "",
    }


def test_isolation_and_gpu_flags_are_the_reports_not_the_trainers():
    args, trainer_flags = scaling._parser().parse_known_args(
        ["--noisolate_network", "--gpus_per_worker=1", "--epochs=3"]
    )

    assert (args.isolate_network, args.gpus_per_worker, trainer_flags) == (False, 1, ["--epochs=3"])
    spec = scaling.run_spec(
        1,
        strategy="multi_worker",
        num_ps=1,
        trainer_flags=trainer_flags,
        metrics="m.json",
        isolate_network=args.isolate_network,
        environ={},
    )
    assert not plan_launch(spec).isolate_network and spec.num_ps == 0
    assert "--num_ps=1" not in spec.command
