"""The absl trainer in this process: flags → config → job, and its one-line errors."""

import json

import pytest

from tfdist.cli import train

pytestmark = pytest.mark.usefixtures("fresh_flags")


def _run(*args):
    with pytest.raises(SystemExit) as exited:
        train.main(["tfdist.train", *args])
    return exited.value.code


def _one_line_error(capsys, pattern):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert pattern in err[0], err[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model=resnet9000"], "Unknown model 'resnet9000'. Expected one of: cnn, mlp"),
        (["--dataset=no_such_data_xyz"], "Unknown dataset 'no_such_data_xyz'"),
        (
            ["--strategy=mirrored", "--global_batch_size=33"],
            "global_batch_size (33) must be divisible by the number of replicas (2); use 32 or 34",
        ),
        (["--strategy=parameter_server", "--num_ps=0"], "num_ps (0) must be at least 1"),
        (["--model=cnn", "--dataset=synthetic"], "model 'cnn' needs image input"),
        (
            ["--strategy=parameter_server", "--num_workers=2", "--num_ps=1", "--min_workers=1"],
            "--min_workers (1) is for strategy 'multi_worker', not 'parameter_server'",
        ),
        (
            ["--num_workers=3", "--min_workers=2", "--global_batch_size=64"],
            "but not by 3; use 60 or 66.",
        ),
        (
            ["--num_workers=2", "--min_workers=3"],
            "--min_workers (3) must be at most --num_workers (2); pass --min_workers=2 or fewer.",
        ),
    ],
)
def test_user_mistakes_exit_2_with_one_line(capsys, args, message):
    assert _run(*args, "--epochs=1") == 2
    _one_line_error(capsys, message)


def _parsed(*args):
    from absl import flags

    flags.FLAGS(["tfdist.train", *args])
    return train.config_from_flags()


def test_a_launched_task_gets_its_command_from_the_config():
    """The config written back as flags: this attempt's workers, none of the launcher's own
    settings, the service address, and nothing left at its default."""
    config = _parsed(
        "--num_workers=3",
        "--min_workers=2",
        "--max_restarts=2",
        "--model_dir=/tmp/m",
        "--global_batch_size=60",
        "--noshuffle",
        "--image_size=32x48",
        "--data_service",
        "--verbosity=1",
    )

    class Service:
        address = "grpc://localhost:5000"

    command = train.task_command(config, Service(), num_workers=2)
    assert command[1:3] == ["-m", "tfdist.train"]
    assert command[3:] == [
        "--num_workers=2",
        "--image_size=32x48",
        "--data_service",
        "--data_service_address=grpc://localhost:5000",
        "--noshuffle",
        "--model_dir=/tmp/m",
        "--global_batch_size=60",
        "--verbosity=1",
    ]
    assert _parsed(*command[3:]).launch.num_workers == 2


def test_every_flag_sets_a_config_field_and_every_field_has_a_flag():
    from absl import flags

    from tfdist.config.job import leaf_names

    ours = {f.name for f in flags.FLAGS.flags_by_module_dict()["tfdist.cli.train_flags"]}
    assert ours == set(leaf_names()) - {"export"}  # export: the library's, always on in the CLI.


def test_unknown_strategy_fails_at_flag_parsing(capsys):
    assert _run("--strategy=mirorred") not in (0, None)
    err = capsys.readouterr().err
    assert "--strategy" in err and "auto|one_device|mirrored|multi_worker|parameter_server" in err


def test_malformed_tf_config(monkeypatch, capsys):
    monkeypatch.setenv(
        "TF_CONFIG", '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "ps"}}'
    )
    assert _run("--epochs=1") == 2
    _one_line_error(capsys, "TF_CONFIG is malformed: task type 'ps' is not a job of the cluster")


def test_tfds_name_not_on_disk(tmp_path, capsys):
    assert _run("--dataset=mnist", f"--data_dir={tmp_path}") == 2
    _one_line_error(capsys, "TFDS dataset 'mnist' is not prepared on disk")


def test_flagfile_and_metrics_json(tmp_path):
    metrics = tmp_path / "out" / "metrics.json"
    flagfile = tmp_path / "job.flags"
    flagfile.write_text(
        f"--strategy=mirrored\n--epochs=2\n--steps_per_epoch=5\n"
        f"--metrics_json={metrics}\n--model_dir={tmp_path / 'model'}\n"
    )
    assert _run(f"--flagfile={flagfile}") == 0
    summary = json.loads(metrics.read_text())
    for key in (
        "strategy",
        "num_replicas",
        "num_workers",
        "steps",
        "train_loss",
        "train_accuracy",
        "val_accuracy",
        "examples_per_sec",
        "wall_seconds",
    ):
        assert key in summary
    assert (summary["strategy"], summary["num_replicas"], summary["steps"]) == ("mirrored", 2, 10)
    assert (tmp_path / "model" / "model.keras").exists()


def test_gpus_per_worker_reaches_the_launcher(monkeypatch, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # One GPU id visible, two needed.
    assert _run("--strategy=multi_worker", "--num_workers=2", "--gpus_per_worker=1") == 2
    _one_line_error(
        capsys,
        "gpus_per_worker (1) for 2 worker task(s) needs 2 GPUs, but the GPUs visible are 1 (0)",
    )


def test_jit_compile_compiles_the_jobs_model_with_xla(tmp_path, capsys):
    from tfdist.cli.job import compile_model
    from tfdist.config import JobConfig
    from tfdist.models import build_model

    for jit in (False, True):
        config = JobConfig.from_flat(jit_compile=jit)
        model = compile_model(build_model("mlp", input_shape=(8,), num_classes=3), config)
        assert model.jit_compile is jit
    metrics = tmp_path / "m.json"
    assert _run("--jit_compile", "--epochs=1", f"--metrics_json={metrics}") == 0
    assert json.loads(metrics.read_text())["jit_compile"] is True
    assert _run("--jit_compile", "--strategy=parameter_server", "--num_ps=1") == 2
    _one_line_error(capsys, "jit_compile (True) compiles a step with XLA")
