"""Tests for launch.k8s.tfjob (Kubeflow TFJob manifests) and launch.k8s.yaml_text, read back with
PyYAML."""

import pytest
import yaml
from readme_examples import readme_example

from launch import LaunchError
from launch.__main__ import main
from launch.k8s.tfjob import tfjob_manifest, tfjob_yaml
from launch.k8s.yaml_text import dump

COMMAND = ["python", "-m", "tfdist.train", "--strategy=multi_worker", "--model_dir=gs://b/r"]


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "kubeflow.org/v1",
        "nvidia.com/gpu",
        "yes",
        "No",
        "on",
        "null",
        "~",
        "true",
        "1",
        "0.5",
        "1e3",
        "0x1F",
        "-m",
        "--flag=a b",
        "a: b",
        "#comment",
        "[x]",
        "{x}",
        "*ref",
        "&anchor",
        "!tag",
        "%dir",
        "@at",
        "`tick`",
        "'single'",
        '"double"',
        "a\nb",
        "tab\there",
        "é ünïcode",
        "",
        " lead",
        "trail ",
        "x:",
        "-",
        "?",
        "|",
        ">",
        "2024-01-01",
        "12:30",
    ],
)
def test_dump_round_trips_every_string(value):
    document = {"key": value, "list": [value], value or "empty": 1}

    assert yaml.safe_load(dump(document)) == document


def test_dump_round_trips_nested_data():
    data = {
        "a": [{"b": 1, "c": [True, False, None, 2.5]}, [], {}, [[1, 2], ["x"]]],
        "d": {"e": {}},
        "f": -3,
    }

    assert yaml.safe_load(dump(data)) == data


@pytest.mark.parametrize(
    "value, match",
    [
        ({1: "x"}, "Mapping key 1 must be a str"),
        ({"x": object()}, "Cannot write object"),
        ({"x": float("nan")}, "Cannot write the float nan"),
    ],
)
def test_dump_rejects_what_it_cannot_write(value, match):
    with pytest.raises(TypeError, match=match):
        dump(value)


def _container(spec):
    containers = spec["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _check_tfjob(document, *, replicas):
    """Checks the fields the kubeflow.org/v1 TFJob schema requires, and the replica counts."""
    assert document["apiVersion"] == "kubeflow.org/v1"
    assert document["kind"] == "TFJob"
    assert isinstance(document["metadata"]["name"], str)
    specs = document["spec"]["tfReplicaSpecs"]
    assert {name: spec["replicas"] for name, spec in specs.items()} == replicas
    for spec in specs.values():
        assert spec["restartPolicy"] in ("Always", "OnFailure", "Never", "ExitCode")
        container = _container(spec)
        assert container["name"] == "tensorflow"
        assert isinstance(container["image"], str) and container["image"]
        assert all(isinstance(arg, str) for arg in container["command"] + container.get("args", []))
    return specs


def test_multi_worker_tfjob_field_by_field():
    document = yaml.safe_load(
        tfjob_yaml(
            tfjob_manifest(
                name="digits",
                strategy="multi_worker",
                image="reg.example.com/tfdist:1",
                command=COMMAND,
                num_workers=3,
                gpus_per_worker=2,
                cpu="4",
                memory="8Gi",
                namespace="ml",
            ),
            strategy="multi_worker",
        )
    )

    specs = _check_tfjob(document, replicas={"Worker": 3})
    assert document["metadata"] == {"name": "digits", "namespace": "ml"}
    assert document["spec"]["runPolicy"] == {"cleanPodPolicy": "Running"}
    worker = specs["Worker"]
    assert worker["restartPolicy"] == "Never"
    container = _container(worker)
    assert container["image"] == "reg.example.com/tfdist:1"
    assert container["command"] == ["python"]
    assert container["args"] == COMMAND[1:]
    assert container["env"] == [{"name": "PYTHONUNBUFFERED", "value": "1"}]
    assert container["resources"] == {
        "requests": {"cpu": "4", "memory": "8Gi"},
        "limits": {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": 2},
    }


def test_parameter_server_tfjob_has_chief_ps_and_workers_with_gpus_only_on_workers():
    document = yaml.safe_load(
        tfjob_yaml(
            tfjob_manifest(
                name="pss",
                strategy="parameter_server",
                image="img",
                command=COMMAND,
                num_workers=4,
                num_ps=2,
                gpus_per_worker=1,
            ),
            strategy="parameter_server",
        )
    )

    specs = _check_tfjob(document, replicas={"Chief": 1, "PS": 2, "Worker": 4})
    assert {name: spec["restartPolicy"] for name, spec in specs.items()} == {
        "Chief": "Never",
        "PS": "Never",
        "Worker": "OnFailure",
    }
    assert "resources" not in _container(specs["Chief"])
    assert "resources" not in _container(specs["PS"])
    assert _container(specs["Worker"])["resources"] == {"limits": {"nvidia.com/gpu": 1}}


def test_mirrored_tfjob_is_one_worker_pod():
    document = yaml.safe_load(
        tfjob_yaml(
            tfjob_manifest(
                name="one", strategy="mirrored", image="img", command=["train"], gpus_per_worker=8
            ),
            strategy="mirrored",
        )
    )

    specs = _check_tfjob(document, replicas={"Worker": 1})
    container = _container(specs["Worker"])
    assert container["command"] == ["train"] and "args" not in container
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8


def test_manifest_without_resources_or_namespace():
    manifest = tfjob_manifest(
        name="x", strategy="multi_worker", image="img", command=["t"], num_workers=2
    )

    assert manifest["metadata"] == {"name": "x"}
    assert "resources" not in _container(manifest["spec"]["tfReplicaSpecs"]["Worker"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(strategy="mirorred"),
            r"Unknown strategy 'mirorred' for a TFJob. Expected one of: "
            r"mirrored, multi_worker, parameter_server.",
        ),
        (dict(name="My_Job"), r"name \('My_Job'\) must be a Kubernetes name"),
        (dict(namespace="-ns"), r"namespace \('-ns'\) must be a Kubernetes name"),
        (dict(image="a b"), r"image \('a b'\) must be a container image reference"),
        (dict(command=[]), r"command \(\[\]\) must be a non-empty list of strings"),
        (dict(num_workers=0), r"num_workers \(0\) must be an integer of at least 1"),
        (
            dict(strategy="mirrored", num_workers=2),
            r"num_workers \(2\) must be 1 for strategy "
            r"'mirrored'",
        ),
        (dict(num_ps=1), r"num_ps \(1\) must be 0 for strategy 'multi_worker'"),
        (
            dict(strategy="parameter_server"),
            r"num_ps \(0\) must be at least 1 for strategy "
            r"'parameter_server'; pass --num_ps=1",
        ),
        (dict(gpus_per_worker=-1), r"gpus_per_worker \(-1\) must be an integer of at least 0"),
        (dict(memory="8 GB"), r"memory \('8 GB'\) must be a Kubernetes quantity"),
    ],
)
def test_manifest_errors(kwargs, match):
    arguments = dict(name="x", strategy="multi_worker", image="img", command=["t"])
    arguments.update(kwargs)

    with pytest.raises(LaunchError, match=match):
        tfjob_manifest(**arguments)


def test_readme_kubernetes_example_is_what_the_cli_prints(capsys):
    argv, expected = readme_example("python -m launch k8s", doc="docs/deployment.md")

    assert main(argv) == 0

    printed = capsys.readouterr().out
    assert printed == expected
    _check_tfjob(yaml.safe_load(printed), replicas={"Worker": 2})


def test_cli_writes_the_manifest_to_output(tmp_path, capsys):
    path = tmp_path / "tfjob.yaml"

    assert (
        main(
            [
                "k8s",
                "--strategy=parameter_server",
                "--image=img",
                "--num_workers=2",
                "--num_ps=1",
                f"--output={path}",
                "--",
                "python",
                "-m",
                "tfdist.train",
            ]
        )
        == 0
    )

    _check_tfjob(yaml.safe_load(path.read_text()), replicas={"Chief": 1, "PS": 1, "Worker": 2})
    assert capsys.readouterr().err == f"launch: wrote {path}\n"


@pytest.mark.parametrize(
    "argv, match",
    [
        (
            ["k8s", "--strategy=multi_worker", "--", "x"],
            "the following arguments are required: --image (see --help).",
        ),
        (
            ["k8s", "--strategy=parameter_server", "--image=i", "--", "x"],
            "num_ps (0) must be at least 1 for strategy 'parameter_server'; pass --num_ps=1.",
        ),
        (
            ["k8s", "--strategy=multi_worker", "--image=i", "--gpus_per_worker=x", "--", "x"],
            "argument --gpus_per_worker: 'x' is not an integer of at least 0",
        ),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(capsys, argv, match):
    assert main(argv) == 2

    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("launch: error: ") and match in captured.err
