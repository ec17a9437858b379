"""Every manifest `python -m launch k8s` writes, checked against the real schemas.

TFJobs against the TFJob CustomResourceDefinition of Kubeflow's training-operator
v1.9.0 (`../shared/k8s/kubeflow.org_tfjobs.yaml`, its openAPIV3Schema, with
`jsonschema`); the Indexed Jobs and Services of `--kind=job` against
Kubernetes' own API schemas (`kubernetes-validate`, offline, strict: unknown
fields fail, as `kubectl apply`'s strict field validation does). Both checks
are "strict": a field the API would prune or reject fails the test. Without
the packages or the CRD file the tests skip and say why; under CI
(`CI=true`) they fail instead.
"""

import copy
import os
import pathlib

import pytest
import yaml

from launch.__main__ import main

CRD = (
    pathlib.Path(__file__).resolve().parents[3].parent
    / "shared"
    / "k8s"
    / "kubeflow.org_tfjobs.yaml"
)
K8S_VERSIONS = ("1.27.0", "1.37.0")  # An old supported release and the newest schemas here.
COMMAND = ["--", "python", "-m", "tfdist.train", "--model_dir=gs://bucket/runs/a b"]

# Each case: the flags of `python -m launch k8s` (the strategy's own command is added).
CASES = {
    "multi_worker": ["--strategy=multi_worker", "--num_workers=2"],
    "multi_worker_gpus_resources_env_namespace": [
        "--strategy=multi_worker",
        "--num_workers=4",
        "--gpus_per_worker=2",
        "--cpu=4",
        "--memory=8Gi",
        "--env=TF_CPP_MIN_LOG_LEVEL=2",
        "--env=NCCL_DEBUG=INFO",
        "--namespace=ml-team",
        "--name=digits-run-7",
    ],
    "parameter_server": ["--strategy=parameter_server", "--num_ps=1", "--num_workers=2"],
    "parameter_server_gpus_resources_env": [
        "--strategy=parameter_server",
        "--num_ps=3",
        "--num_workers=5",
        "--gpus_per_worker=1",
        "--cpu=500m",
        "--memory=1.5Gi",
        "--env=EMPTY=",
        "--name=pss",
    ],
    "mirrored": ["--strategy=mirrored", "--gpus_per_worker=8", "--name=one"],
    "mirrored_cpu_only_long_name": ["--strategy=mirrored", "--cpu=2", "--name=" + "a" * 50],
    "multi_worker_one_worker_long_name": ["--strategy=multi_worker", "--name=" + "w" * 50],
}


def _require(module):
    try:
        return __import__(module)
    except ImportError as error:
        reason = f"{module} is not installed ({error}); pip install -e '.[test]'"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must validate the manifests, but {reason}.")
        pytest.skip(reason)


def _strict(schema):
    """Returns `schema` with unknown fields rejected wherever it lists the known ones.

    A structural CRD schema does not say `additionalProperties: false`; the API
    server prunes unknown fields instead, which for us would be a silent bug.
    """
    schema = copy.deepcopy(schema)

    def visit(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema


@pytest.fixture(scope="module")
def tfjob_validator():
    jsonschema = _require("jsonschema")
    if not CRD.exists():
        reason = f"the TFJob CRD is not at {CRD} (the project's ../shared/k8s/)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    crd = yaml.safe_load(CRD.read_text())
    assert crd["spec"]["names"]["kind"] == "TFJob"
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1"
    schema = _strict(version["schema"]["openAPIV3Schema"])
    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft7Validator
    )
    validator_class.check_schema(schema)
    return validator_class(schema)


@pytest.fixture(scope="module")
def k8s_validate():
    _require("kubernetes_validate")
    import kubernetes_validate

    def validate(document, version):
        kubernetes_validate.validate(document, version, strict=True)

    return validate


def _manifests(capsys, flags, *, kind):
    assert (
        main(
            ["k8s", f"--kind={kind}", "--image=registry.example.com/tfdist:0.1.0", *flags, *COMMAND]
        )
        == 0
    )
    return [document for document in yaml.safe_load_all(capsys.readouterr().out) if document]


@pytest.mark.parametrize("case", CASES)
def test_every_tfjob_validates_against_kubeflows_crd(case, capsys, tfjob_validator):
    documents = _manifests(capsys, CASES[case], kind="tfjob")

    assert len(documents) == 1
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in tfjob_validator.iter_errors(documents[0])
    ]
    assert errors == [], errors
    assert documents[0]["apiVersion"] == "kubeflow.org/v1"
    assert documents[0]["kind"] == "TFJob"


@pytest.mark.parametrize("case", CASES)
def test_every_indexed_job_and_service_validates_against_kubernetes(case, capsys, k8s_validate):
    documents = _manifests(capsys, CASES[case], kind="job")

    kinds = [document["kind"] for document in documents]
    strategy = CASES[case][0].partition("=")[2]
    expected = {
        "mirrored": ["Job"],
        "multi_worker": ["Service", "Job"],
        "parameter_server": ["Service", "Job", "Job", "Job"],
    }[strategy]
    assert kinds == expected
    for document in documents:
        for version in K8S_VERSIONS:
            k8s_validate(document, version)
    if strategy != "mirrored":
        assert all(doc["spec"]["completionMode"] == "Indexed" for doc in documents[1:])


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("spec", "tfReplicaSpecs", "Worker", "replicas"), "two", "'two' is not of type 'integer'"),
        (
            ("spec", "tfReplicaSpecs", "Worker", "restartPolcy"),
            "Never",
            "Additional properties are not allowed ('restartPolcy' was unexpected)",
        ),
        (("spec", "runPolicy", "cleanPodPolicy"), ["Running"], "is not of type 'string'"),
    ],
)
def test_the_crd_check_catches_a_broken_tfjob(path, value, message, capsys, tfjob_validator):
    document = _manifests(capsys, CASES["multi_worker"], kind="tfjob")[0]
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value

    messages = [error.message for error in tfjob_validator.iter_errors(document)]
    assert any(message in text for text in messages), messages


@pytest.mark.parametrize(
    "path, value",
    [
        (("spec", "completionMode"), 1),
        (("spec", "template", "spec", "subdomian"), "tfdist"),
        (("spec", "template", "spec", "containers"), [{"image": "no-name"}]),
    ],
)
def test_the_kubernetes_check_catches_a_broken_job(path, value, capsys, k8s_validate):
    import kubernetes_validate

    document = _manifests(capsys, CASES["multi_worker"], kind="job")[1]
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value

    with pytest.raises(kubernetes_validate.ValidationError):
        k8s_validate(document, K8S_VERSIONS[-1])
