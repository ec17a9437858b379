"""The trainer CLI on file datasets: each source trains, each bad input is one line, exit 2.

Runs use one_device: mirrored jobs of different model sizes in one process would share
collective instance keys.
"""

import json
import os

import data_files
import pytest

from tfdist.cli import train

pytestmark = pytest.mark.usefixtures("fresh_flags")


def _run(*args):
    with pytest.raises(SystemExit) as exited:
        train.main(["tfdist.train", "--strategy=one_device", *args])
    return exited.value.code


def _one_line_error(capsys, pattern):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert pattern in err[0], err[0]
    return err[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    return {
        "tfrecord": data_files.write_tfrecords(str(root / "tfrecord"), [48, 48]),
        "csv": data_files.write_csv(str(root / "csv"), [48, 48]),
        "npz": data_files.write_npz(str(root / "train.npz"), 0, 96),
        "image_folder": data_files.write_image_folder(str(root / "images"), per_class=32),
    }


@pytest.mark.parametrize("dataset", ["tfrecord", "csv", "npz", "image_folder"])
def test_each_file_dataset_trains_from_the_cli(tmp_path, files, dataset):
    metrics = tmp_path / "metrics.json"
    assert (
        _run(
            f"--dataset={dataset}",
            f"--train_files={files[dataset]}",
            f"--validation_files={files[dataset]}",
            "--id_key=id",
            "--shard_policy=hash",
            "--global_batch_size=16",
            "--epochs=2",
            "--steps_per_loop=3",
            f"--metrics_json={metrics}",
        )
        == 0
    )
    summary = json.loads(metrics.read_text())
    assert summary["steps"] == 2 * 6 and summary["val_accuracy"] is not None


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--dataset=csv"],
            "dataset 'csv' reads files: pass --train_files, e.g. --train_files='data/train-*.csv'",
        ),
        (
            ["--dataset=tfrecord", "--train_files=/no/such/dir/train-*.tfrecord"],
            "train_files ('/no/such/dir/train-*.tfrecord') matches no file",
        ),
        (
            ["--data_service", "--shard_policy=hash"],
            "--shard_policy ('hash') does not apply with --data_service",
        ),
        (["--image_size=32y32"], "image_size ('32y32') must be HEIGHT and WIDTH in pixels"),
    ],
)
def test_settings_mistakes(capsys, args, message):
    assert _run(*args, "--epochs=1") == 2
    _one_line_error(capsys, message)


def test_batch_larger_than_the_files(capsys, files):
    assert (
        _run(
            "--dataset=csv",
            f"--train_files={files['csv']}",
            "--global_batch_size=128",
            "--id_key=id",
        )
        == 2
    )
    _one_line_error(
        capsys,
        "global_batch_size (128) is larger than the 'csv' training split "
        "(96 examples); use at most 96",
    )


def test_corrupt_tfrecord(tmp_path, capsys):
    pattern = data_files.write_tfrecords(str(tmp_path), [20])
    path = tmp_path / "train-000.tfrecord"
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) - 7]))  # Truncated mid-record.
    assert _run("--dataset=tfrecord", f"--train_files={pattern}") == 2
    _one_line_error(capsys, f"TFRecord file '{path}' is corrupt")


def test_feature_spec_that_does_not_match(tmp_path, capsys):
    pattern = data_files.write_tfrecords(str(tmp_path), [20])
    assert (
        _run(
            "--dataset=tfrecord",
            f"--train_files={pattern}",
            "--feature_spec=x:float32:5,label:int64",
        )
        == 2
    )
    line = _one_line_error(capsys, "does not match the feature spec")
    assert "train-000.tfrecord" in line and "fix --feature_spec" in line


def test_csv_missing_column(tmp_path, capsys):
    pattern = data_files.write_csv(str(tmp_path), [20], header=["a", "b", "c", "d", "target"])
    assert _run("--dataset=csv", f"--train_files={pattern}") == 2
    _one_line_error(
        capsys, "has no column 'label' (its columns: a, b, c, d, target); pass --label_key=NAME"
    )


def test_bad_image_found_while_training(tmp_path, capsys):
    root = data_files.write_image_folder(str(tmp_path / "images"), per_class=4)
    (tmp_path / "images" / "owl" / "02.png").write_bytes(b"\x89PNG broken")
    assert (
        _run(
            "--dataset=image_folder", f"--train_files={root}", "--global_batch_size=4", "--epochs=1"
        )
        == 2
    )
    _one_line_error(capsys, f"image file '{os.path.join(root, 'owl', '02.png')}' cannot be decoded")
