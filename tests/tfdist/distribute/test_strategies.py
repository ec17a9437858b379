import json

import pytest

from launch.tf_config import parse_tf_config
from tfdist.config import ConfigError
from tfdist.distribute.strategies import TaskRole, _pipeline_id, make_strategy, resolve_kind

PS_CLUSTER = {"chief": ["localhost:1"], "worker": ["localhost:2"], "ps": ["localhost:3"]}


def _cluster(jobs, task_type, index=0):
    return parse_tf_config(
        json.dumps({"cluster": jobs, "task": {"type": task_type, "index": index}})
    )


def test_auto_decides_from_tf_config_and_devices():
    assert resolve_kind("auto", None, num_gpus=0) == "mirrored"
    assert resolve_kind("auto", None, num_gpus=1) == "one_device"
    assert resolve_kind("auto", None, num_gpus=4) == "mirrored"
    assert resolve_kind("auto", _cluster({"worker": ["h:1", "h:2"]}, "worker"), 0) == "multi_worker"
    assert resolve_kind("auto", _cluster(PS_CLUSTER, "chief"), 0) == "parameter_server"
    assert resolve_kind("mirrored", _cluster(PS_CLUSTER, "chief"), 0) == "mirrored"


def test_mirrored_without_gpu_uses_logical_cpus():
    distribution = make_strategy("mirrored")
    assert distribution.kind == "mirrored" and distribution.num_replicas == 2
    assert distribution.role.is_chief and not distribution.is_async
    assert make_strategy("auto").kind == "mirrored"
    assert make_strategy("one_device").num_replicas == 1


def test_more_cpu_replicas_than_configured_says_how():
    with pytest.raises(
        ConfigError,
        match=r"num_devices \(3\) CPU replicas.*already started "
        r"with 2 CPU device\(s\).*configure_cpu_devices\(3\)",
    ):
        make_strategy("mirrored", num_devices=3)


@pytest.mark.parametrize(
    "kind, kwargs, message",
    [
        (
            "mirorred",
            {},
            r"Unknown strategy 'mirorred'. Expected one of: auto, one_device, mirrored, "
            r"multi_worker, parameter_server",
        ),
        ("parameter_server", {}, r"needs a TF_CONFIG cluster with 'chief', 'worker' and 'ps'"),
        (
            "parameter_server",
            {"cluster": _cluster(PS_CLUSTER, "ps")},
            r"task ps:0 .* runs a server",
        ),
        (
            "multi_worker",
            {"cluster": _cluster(PS_CLUSTER, "chief")},
            r"cannot run in a TF_CONFIG "
            r"cluster that has 'ps'",
        ),
    ],
)
def test_bad_strategy_requests(kind, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_strategy(kind, **kwargs)


def test_direct_input_only_for_one_cpu_replica():
    """One CPU replica reads its own dataset; several replicas need the distributed one."""
    context = make_strategy("one_device").direct_input_context()
    assert (
        context.num_input_pipelines,
        context.input_pipeline_id,
        context.num_replicas_in_sync,
    ) == (1, 0, 1)
    assert make_strategy("mirrored").direct_input_context() is None


@pytest.mark.parametrize(
    "jobs", [{"worker": ["h:1", "h:2", "h:3"]}, {"chief": ["h:9"], "worker": ["h:1", "h:2"]}]
)
def test_input_pipeline_ids_number_tasks_as_tensorflow_does(jobs):
    from tensorflow.python.distribute import multi_worker_util  # TF's own numbering.

    spec = {job: list(addresses) for job, addresses in jobs.items()}
    for job, addresses in jobs.items():
        for index in range(len(addresses)):
            cluster = _cluster(jobs, job, index)
            role = TaskRole(job, index, job == "chief")
            assert _pipeline_id(role, cluster) == multi_worker_util.id_in_cluster(spec, job, index)
