"""Every strategy trains digits with the mlp as real processes, through the CLI."""

import pytest
from e2e_helpers import explain, run_trainer


def test_default_command_trains_digits_on_two_replicas(tmp_path):
    """The README's first command: no flags at all."""
    process, summary = run_trainer(tmp_path)
    assert process.returncode == 0, explain(process)
    assert summary["num_replicas"] >= 2 and summary["dataset"] == "digits"
    assert summary["val_accuracy"] >= 0.95, summary


@pytest.mark.parametrize(
    "flags, replicas, workers",
    [
        (["--strategy=one_device"], 1, 1),
        (["--strategy=mirrored", "--num_devices=2"], 2, 1),
        (["--strategy=multi_worker", "--num_workers=2"], 2, 2),
        (["--strategy=parameter_server", "--num_workers=2", "--num_ps=1"], 2, 2),
    ],
    ids=["one_device", "mirrored", "multi_worker", "parameter_server"],
)
def test_each_strategy_reaches_accuracy(tmp_path, flags, replicas, workers):
    process, summary = run_trainer(
        tmp_path, *flags, "--model=mlp", "--dataset=digits", f"--model_dir={tmp_path / 'model'}"
    )
    assert process.returncode == 0, explain(process)
    assert (summary["num_replicas"], summary["num_workers"]) == (replicas, workers)
    assert summary["val_accuracy"] >= 0.93, summary
    assert summary["steps"] == 20 * 23
    assert (tmp_path / "model" / "model.keras").exists()
    if workers > 1:
        tasks = {
            line.split("]")[0] + "]" for line in process.stdout.splitlines() if line.startswith("[")
        }
        assert len(tasks) >= workers, process.stdout[-2000:]  # Output prefixed per task.


def test_multi_worker_resumes_from_checkpoint(tmp_path):
    model_dir = tmp_path / "model"
    common = ["--strategy=multi_worker", "--num_workers=2", f"--model_dir={model_dir}"]
    first, _ = run_trainer(tmp_path, *common, "--epochs=2")
    assert first.returncode == 0, explain(first)
    second, summary = run_trainer(tmp_path, *common, "--epochs=3")
    assert second.returncode == 0, explain(second)
    assert summary["restored_from"].endswith("ckpt-46")
    assert [e["epoch"] for e in summary["history"]] == [3] and summary["steps"] == 69
    assert not (model_dir / ".tmp" / "worker_1").exists()  # The worker's temporary copy is gone.


def test_a_failing_worker_stops_the_cluster_with_its_exit_code(tmp_path):
    process, _ = run_trainer(tmp_path, "--num_workers=2", "--model=resnet9000", timeout=120)
    assert process.returncode == 2, explain(process)
    assert "failed with exit code 2 (root cause)" in process.stderr, explain(process)
    assert "Unknown model 'resnet9000'" in process.stdout + process.stderr
