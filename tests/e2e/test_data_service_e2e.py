"""The trainer CLI with its input through a tf.data service, and a data error in a cluster."""

import data_files
from e2e_helpers import explain, run_trainer


def test_multi_worker_trains_digits_through_the_data_service(tmp_path):
    process, summary = run_trainer(
        tmp_path,
        "--strategy=multi_worker",
        "--num_workers=2",
        "--data_service",
        "--data_service_workers=2",
    )
    assert process.returncode == 0, explain(process)
    assert summary["data_service"].startswith("grpc://localhost:"), summary
    assert summary["val_accuracy"] >= 0.93 and summary["steps"] == 20 * 23, summary
    for task in ("[dispatcher:0]", "[data_worker:1]", "[worker:1]"):
        assert task in process.stdout, process.stdout[-2000:]


def test_parameter_server_reads_through_the_data_service(tmp_path):
    process, summary = run_trainer(
        tmp_path,
        "--strategy=parameter_server",
        "--num_workers=2",
        "--num_ps=1",
        "--data_service",
        "--epochs=4",
    )
    assert process.returncode == 0, explain(process)
    assert summary["data_service"] and summary["val_accuracy"] >= 0.85, summary


def test_fewer_files_than_workers_stops_the_cluster_with_one_line(tmp_path):
    pattern = data_files.write_tfrecords(str(tmp_path / "data"), [64])
    process, _ = run_trainer(
        tmp_path,
        "--strategy=multi_worker",
        "--num_workers=2",
        "--dataset=tfrecord",
        f"--train_files={pattern}",
        "--shard_policy=file",
        timeout=120,
    )
    assert process.returncode == 2, explain(process)
    assert "failed with exit code 2 (root cause)" in process.stderr, explain(process)
    assert (
        "error: --shard_policy 'file' needs at least one file per input pipeline, but "
        f"--train_files ('{pattern}') has 1 file(s) for 2 input pipelines"
        in process.stdout
        + process.stderr
    ), explain(process)
