import json
import subprocess
import sys
from pathlib import Path

import pytest

from launch.tf_config import TaskSpec
from tfdist.config import (
    CheckpointConfig,
    CommunicationConfig,
    ConfigError,
    JobConfig,
    LocalSGDConfig,
    LoopConfig,
    check_loop_fits,
    per_replica_batch_size,
)
from tfdist.distribute.cluster import parse_tf_config, read_tf_config


def test_defaults_are_valid():
    config = JobConfig.from_flat()
    assert (config.launch.strategy, config.model.model, config.data.dataset) == (
        "auto",
        "mlp",
        "digits",
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"strategy": "mirorred"},
            r"Unknown strategy 'mirorred'. Expected one of: auto, one_device",
        ),
        (
            {"optimizer": "adagradx"},
            r"Unknown optimizer 'adagradx'. Expected one of: sgd, adam, rmsprop",
        ),
        ({"global_batch_size": 0}, r"global_batch_size \(0\) must be a whole number of at least 1"),
        ({"strategy": "mirrored", "num_ps": 1}, r"num_ps \(1\) is only used by strategy"),
        ({"strategy": "mirrored", "num_workers": 2}, r"--strategy=multi_worker"),
        ({"gpus_per_worker": -1}, r"gpus_per_worker \(-1\) must be an integer of at least 0"),
        (
            {"strategy": "mirrored", "gpus_per_worker": 1},
            r"gpus_per_worker \(1\) is for worker processes, not strategy 'mirrored'; use "
            r"--num_devices",
        ),
        (
            {"strategy": "multi_worker", "num_workers": 2, "min_workers": 3},
            r"^min_workers \(3\) must be at most num_workers \(2\); pass min_workers=2 or fewer\.$",
        ),
        (
            {"strategy": "parameter_server", "num_workers": 2, "num_ps": 1, "min_workers": 1},
            r"^min_workers \(1\) is for strategy 'multi_worker', not 'parameter_server': a "
            r"parameter_server worker is restarted in place",
        ),
        (
            {"strategy": "multi_worker", "num_workers": 3, "min_workers": 0},
            r"^min_workers \(0\) must be a positive number",
        ),
        (
            {
                "strategy": "multi_worker",
                "num_workers": 3,
                "min_workers": 2,
                "global_batch_size": 64,
            },
            r"^global_batch_size \(64\) must be divisible by the number of replicas of "
            r"every cluster "
            r"size from min_workers \(2\) to num_workers \(3\), .* but not by 3; use 60 or 66\.$",
        ),
        (
            {
                "strategy": "multi_worker",
                "num_workers": 2,
                "min_workers": 1,
                "gpus_per_worker": 2,
                "global_batch_size": 6,
            },
            r"but not by 4; use 4 or 8\.$",
        ),
    ],
)
def test_bad_settings_name_the_value_and_fix(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        JobConfig.from_flat(**kwargs)


def test_min_workers_with_a_batch_every_cluster_size_divides():
    config = JobConfig.from_flat(
        strategy="multi_worker", num_workers=4, min_workers=2, global_batch_size=96
    )
    assert config.launch.min_workers == 2


def test_per_replica_batch_names_valid_sizes():
    assert per_replica_batch_size(64, 2) == 32
    with pytest.raises(
        ConfigError,
        match=r"global_batch_size \(30\) must be divisible by the "
        r"number of replicas \(4\); use 28 or 32",
    ):
        per_replica_batch_size(30, 4)


def test_launch_layout_follows_num_ps():
    assert JobConfig.from_flat(num_workers=2).launch.launch_strategy() == "multi_worker"
    assert (
        JobConfig.from_flat(num_workers=2, num_ps=1).launch.launch_strategy() == "parameter_server"
    )
    assert JobConfig.from_flat(num_workers=2).launch.needs_local_cluster(None)
    assert not JobConfig.from_flat().launch.needs_local_cluster(None)


def _tf_config(cluster, task):
    return json.dumps({"cluster": cluster, "task": task})


PSS = {"chief": ["h:1"], "worker": ["h:2", "h:3"], "ps": ["h:4"]}


def _cluster(jobs=PSS, task=("chief", 0)):
    return parse_tf_config(_tf_config(jobs, {"type": task[0], "index": task[1]}))


def test_parameter_server_without_tf_config_needs_num_ps():
    config = JobConfig.from_flat(strategy="parameter_server", num_workers=2)  # Valid by itself.

    with pytest.raises(
        ConfigError,
        match=r"^num_ps \(0\) must be at least 1 for strategy "
        r"'parameter_server' when tfdist launches the cluster "
        r"itself \(no TF_CONFIG\); pass num_ps=1",
    ):
        config.launch.check_cluster(None)
    JobConfig.from_flat(strategy="parameter_server", num_workers=2, num_ps=1).launch.check_cluster(
        None
    )
    JobConfig.from_flat().launch.check_cluster(None)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(strategy="parameter_server"),
        dict(strategy="parameter_server", num_workers=2, num_ps=1),
        dict(strategy="auto"),
        dict(strategy="auto", num_ps=1),
    ],
)
def test_tf_config_gives_the_shape_and_given_counts_agree(kwargs):
    config = JobConfig.from_flat(**kwargs)

    for task in [("chief", 0), ("worker", 1), ("ps", 0)]:
        config.launch.check_cluster(_cluster(task=task))
    assert not config.launch.needs_local_cluster(_cluster())


@pytest.mark.parametrize(
    "kwargs, jobs, message",
    [
        (
            dict(strategy="parameter_server", num_workers=3),
            PSS,
            r"^num_workers \(3\) does not agree with TF_CONFIG, whose cluster has 2 worker\(s\); "
            r"pass num_workers=2 or leave num_workers unset \(TF_CONFIG decides\).$",
        ),
        (
            dict(strategy="parameter_server", num_ps=2),
            PSS,
            r"^num_ps \(2\) does not agree with TF_CONFIG, whose cluster has 1 ps task\(s\); "
            r"pass num_ps=1",
        ),
        (dict(strategy="auto", num_ps=0), PSS, r"num_ps \(0\) does not agree"),
        (
            dict(strategy="multi_worker"),
            PSS,
            r"^strategy 'multi_worker' cannot run in the TF_CONFIG cluster \(chief, worker, ps\), "
            r"which has 'ps' tasks; pass strategy='parameter_server'",
        ),
        (
            dict(strategy="parameter_server"),
            {"worker": ["h:1", "h:2"]},
            r"^strategy 'parameter_server' needs 'chief' and 'ps' tasks, but the TF_CONFIG cluster "
            r"has only: worker; add them to TF_CONFIG or pass strategy='multi_worker'.$",
        ),
        (
            dict(strategy="multi_worker", num_workers=3),
            {"chief": ["h:1"], "worker": ["h:2"]},
            r"num_workers \(3\) does not agree with TF_CONFIG, whose cluster has 2 worker\(s\)",
        ),
        (
            dict(strategy="multi_worker", min_workers=1),
            {"worker": ["h:1", "h:2"]},
            r"^min_workers \(1\) resizes a cluster tfdist launches itself, not one given by "
            r"TF_CONFIG .*; drop min_workers or unset TF_CONFIG\.$",
        ),
    ],
)
def test_settings_that_disagree_with_tf_config(kwargs, jobs, message):
    task = ("chief", 0) if "chief" in jobs else ("worker", 0)
    with pytest.raises(ConfigError, match=message) as caught:
        JobConfig.from_flat(**kwargs).launch.check_cluster(_cluster(jobs, task))
    assert "\n" not in str(caught.value)


def test_parses_a_parameter_server_cluster():
    text = _tf_config(
        {"chief": ["h:1"], "worker": ["h:2", "h:3"], "ps": ["h:4"]}, {"type": "worker", "index": 1}
    )
    cluster = parse_tf_config(text)
    assert cluster.task == TaskSpec("worker", 1)
    assert cluster.has_ps and cluster.num_workers == 2 and not cluster.is_chief


def test_worker_zero_is_chief_without_a_chief_job():
    cluster = read_tf_config(
        {"TF_CONFIG": _tf_config({"worker": ["h:1", "h:2"]}, {"type": "worker", "index": 0})}
    )
    assert cluster.is_chief and cluster.num_workers == 2
    assert read_tf_config({}) is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", r"not valid JSON"),
        ("[]", r"top level must be a JSON object"),
        ('{"task": {"type": "worker", "index": 0}}', r"it has no 'cluster'"),
        (
            _tf_config({"worker": "h:1"}, {"type": "worker"}),
            r"addresses of job 'worker' \('h:1'\) must be a list of 'host:port' strings",
        ),
        (_tf_config({"worker": []}, {"type": "worker"}), r"job 'worker' has no tasks"),
        (
            _tf_config({"worker": ["h1"]}, {"type": "worker"}),
            r"address 'h1' of task worker:0 must look like 'host:port'",
        ),
        (
            _tf_config({"worker": ["h:0"]}, {"type": "worker"}),
            r"has port 0; ports must be in 1..65535",
        ),
        (
            _tf_config({"worker": ["h:1", "h:1"]}, {"type": "worker"}),
            r"address 'h:1' is used by both worker:0 and worker:1",
        ),
        (_tf_config({"chief": ["h:1", "h:2"]}, {"type": "chief"}), r"at most 1 chief"),
        (
            _tf_config({"worker": ["h:1"]}, {"type": "ps", "index": 0}),
            r"task type 'ps' is not a job of the cluster. Expected one of: worker",
        ),
        (
            _tf_config({"worker": ["h:1"]}, {"type": "worker", "index": 3}),
            r"task index 3 is out of range for job 'worker', which has 1 task\(s\)",
        ),
        (_tf_config({"worker": ["h:1"]}, {"type": "worker", "index": True}), r"task index True"),
        (
            _tf_config({"trainer": ["h:1"]}, {"type": "trainer"}),
            r"unknown job name 'trainer'. Expected one of: chief, worker, ps, evaluator",
        ),
        (_tf_config({"worker": ["h:1"], "ps": ["h:2"]}, {"type": "worker"}), r"needs a 'chief'"),
        ('{"cluster": {}, "task": {"type": "worker"}}', r"'cluster' must be a non-empty object"),
        ('{"cluster": {"worker": ["h:1"]}}', r"'task' must be an object with 'type' and 'index'"),
    ],
)
def test_malformed_tf_config_is_one_line_error(text, message):
    with pytest.raises(ConfigError, match=message) as caught:
        parse_tf_config(text)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("TF_CONFIG is malformed: ")
    assert str(caught.value).endswith(
        '. Expected JSON like {"cluster": {"worker": '
        '["host:port", ...]}, "task": {"type": "worker", '
        '"index": 0}}.'
    )


def test_settings_and_tf_config_import_no_tensorflow():
    """The launcher and the CLI read these before TensorFlow starts (about 2 s a process)."""
    code = (
        "import sys, tfdist.config, tfdist.distribute.cluster, tfdist.cli.train_flags; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'numpy') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# ----- the loop's settings, shared by tfdist.fit and the command line --------------------------
@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: CheckpointConfig(checkpoint_every_steps=10),
            r"^checkpoint_every_steps \(10\) needs somewhere to write; pass model_dir=DIR\.$",
        ),
        (lambda: CheckpointConfig(keep_checkpoints=0), r"keep_checkpoints \(0\) must be a whole"),
        (lambda: CheckpointConfig(model_dir=""), r"model_dir \(''\) must be a directory path"),
        (lambda: LoopConfig(steps_per_loop=0), r"steps_per_loop \(0\) must be a whole number"),
        (lambda: LoopConfig(grad_accum_steps=1.5), r"grad_accum_steps \(1.5\) must be a whole"),
        (lambda: LoopConfig(communication="fp16"), r"communication \('fp16'\) must be a tfdist"),
    ],
)
def test_loop_settings_check_themselves_once_built(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


@pytest.mark.parametrize(
    "loop, facts, message",
    [
        (
            LoopConfig(communication=CommunicationConfig(grad_compression="fp16")),
            dict(strategy="parameter_server", loss_scaled=False),
            r"grad_compression \('fp16'\) compresses the all-reduce of sync strategies",
        ),
        (
            LoopConfig(
                local_sgd=LocalSGDConfig(sync_every=8),
                checkpoint=CheckpointConfig(model_dir="m", checkpoint_every_steps=20),
            ),
            dict(strategy="multi_worker", loss_scaled=False),
            r"checkpoint_every_steps \(20\) must be a multiple of sync_every \(8\).*16 or 24\.$",
        ),
        (
            LoopConfig(local_sgd=LocalSGDConfig(sync_every=4)),
            dict(strategy="mirrored", loss_scaled=True),
            r"loss-scaled optimizer \(mixed_float16\)",
        ),
        (
            LoopConfig(grad_accum_steps=2),
            dict(strategy="mirrored", loss_scaled=False, own_train_step="Vae"),
            r"^grad_accum_steps \(2\) needs tfdist's step, but Vae overrides train_step",
        ),
        (
            LoopConfig(local_sgd=LocalSGDConfig(sync_every=4)),
            dict(strategy="multi_worker", loss_scaled=False, own_train_step="Vae"),
            r"^sync_every \(4\) needs tfdist's step, but Vae overrides train_step",
        ),
        (
            LoopConfig(),
            dict(strategy="parameter_server", loss_scaled=False, own_train_step="Vae"),
            r"^Vae overrides train_step/test_step; under strategy='parameter_server'",
        ),
    ],
)
def test_the_loop_against_what_it_runs_on_is_checked_in_one_place(loop, facts, message):
    with pytest.raises(ConfigError, match=message):
        check_loop_fits(loop, **facts)
    check_loop_fits(LoopConfig(), strategy="mirrored", loss_scaled=True)  # The default fits.


def test_parameter_server_takes_local_steps_checkpointed_at_any_step():
    """Its rounds end inside each scheduled piece, so any checkpoint step falls between
    whole rounds (tfdist.training.ps_local_steps)."""
    loop = LoopConfig(
        local_sgd=LocalSGDConfig(sync_every=8),
        checkpoint=CheckpointConfig(model_dir="m", checkpoint_every_steps=20),
    )
    check_loop_fits(loop, strategy="parameter_server", loss_scaled=False)


def test_job_config_flat_and_back():
    config = JobConfig.from_flat(strategy="mirrored", sync_every=4, model_dir="/tmp/m", epochs=3)
    assert config.loop.local_sgd.sync_every == 4 and config.loop.checkpoint.model_dir == "/tmp/m"
    assert JobConfig.from_flat(**config.flat()) == config
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['sync_evry'\]"):
        JobConfig.from_flat(sync_evry=4)
