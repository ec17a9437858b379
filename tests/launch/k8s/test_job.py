"""Tests for launch.k8s.job (Indexed Jobs + headless Service) and the pod entry launch.k8s.task."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from readme_examples import readme_example

from launch import LaunchError
from launch.__main__ import main
from launch.k8s.job import address_template, job_manifests, pod_task_spec

PY = sys.executable
COMMAND = ["python", "-m", "tfdist.train", "--strategy=multi_worker"]


def _pod(job):
    return job["spec"]["template"]["spec"]


def test_multi_worker_is_one_indexed_job_behind_a_headless_service():
    service, job = job_manifests(
        name="digits",
        strategy="multi_worker",
        image="img:1",
        command=COMMAND,
        num_workers=3,
        gpus_per_worker=1,
        namespace="ml",
        env={"TF_CPP_MIN_LOG_LEVEL": "2"},
    )

    assert service["kind"] == "Service" and service["metadata"]["name"] == "digits"
    assert service["metadata"]["namespace"] == "ml"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": "tfdist",
        "app.kubernetes.io/instance": "digits",
    }
    assert job["metadata"]["name"] == "digits-worker"
    spec = job["spec"]
    assert (
        spec["completionMode"],
        spec["completions"],
        spec["parallelism"],
        spec["backoffLimit"],
    ) == ("Indexed", 3, 3, 0)
    assert job["spec"]["template"]["metadata"]["labels"] == {
        "app.kubernetes.io/name": "tfdist",
        "app.kubernetes.io/instance": "digits",
        "app.kubernetes.io/component": "worker",
    }
    pod = _pod(job)
    assert (pod["subdomain"], pod["restartPolicy"]) == ("digits", "Never")
    container = pod["containers"][0]
    assert container["command"] == ["python"]
    assert container["args"] == [
        "-m",
        "launch.k8s.task",
        "--strategy=multi_worker",
        "--task_type=worker",
        "--num_workers=3",
        "--address_template=digits-{task_type}-{index}.digits:2222",
        "--",
        *COMMAND,
    ]
    assert container["env"] == [
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"},
    ]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    assert container["ports"] == [{"name": "tf-grpc", "containerPort": 2222}]


def test_parameter_server_is_one_indexed_job_per_role():
    manifests = job_manifests(
        name="pss",
        strategy="parameter_server",
        image="img",
        command=["/opt/venv/bin/python3", "-m", "tfdist.train"],
        num_workers=2,
        num_ps=1,
        gpus_per_worker=1,
        cpu="2",
        port=3333,
    )

    service, *jobs = manifests
    assert service["spec"]["ports"] == [{"name": "tf-grpc", "port": 3333, "targetPort": 3333}]
    assert [
        (
            j["metadata"]["name"],
            j["spec"]["completions"],
            _pod(j)["restartPolicy"],
            j["spec"]["backoffLimit"],
        )
        for j in jobs
    ] == [
        ("pss-chief", 1, "Never", 0),
        ("pss-worker", 2, "OnFailure", 6),
        ("pss-ps", 1, "Never", 0),
    ]
    for job in jobs:
        container = _pod(job)["containers"][0]
        assert container["command"] == ["/opt/venv/bin/python3"]  # The command's interpreter.
        assert "--address_template=pss-{task_type}-{index}.pss:3333" in container["args"]
        gpus = container["resources"]["limits"].get("nvidia.com/gpu")
        assert gpus == (1 if job["metadata"]["name"] == "pss-worker" else None)


def test_mirrored_is_one_plain_job_running_the_command():
    (job,) = job_manifests(
        name="one",
        strategy="mirrored",
        image="img",
        command=["tfdist-train", "--epochs=1"],
        gpus_per_worker=4,
    )

    assert "completionMode" not in job["spec"] and "subdomain" not in _pod(job)
    container = _pod(job)["containers"][0]
    assert (container["command"], container["args"]) == (["tfdist-train"], ["--epochs=1"])


def test_pod_task_spec_fills_the_template_for_every_task():
    cluster = pod_task_spec(
        strategy="parameter_server",
        task_type="ps",
        index=0,
        num_workers=2,
        num_ps=1,
        template=address_template("pss"),
    )

    assert cluster.as_dict() == {
        "chief": ["pss-chief-0.pss:2222"],
        "worker": ["pss-worker-0.pss:2222", "pss-worker-1.pss:2222"],
        "ps": ["pss-ps-0.pss:2222"],
    }


def test_pod_task_spec_local_template_gives_each_rank_a_port():
    cluster = pod_task_spec(
        strategy="multi_worker",
        task_type="worker",
        index=1,
        num_workers=3,
        template="localhost:{port}",
        port_base=4000,
    )

    assert cluster.as_dict() == {"worker": ["localhost:4000", "localhost:4001", "localhost:4002"]}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(task_type="chief"),
            r"task_type \('chief'\) is not a role of a multi_worker "
            r"cluster. Expected one of: worker.",
        ),
        (dict(index=2), r"JOB_COMPLETION_INDEX \(2\) must be in 0..1 for the 2 worker pod\(s\)"),
        (dict(template="{host}:1"), r"address_template \('\{host\}:1'\) cannot be filled"),
        (dict(strategy="mirrored"), r"Unknown strategy 'mirrored' for Indexed Jobs"),
        (
            dict(strategy="parameter_server", task_type="ps"),
            r"num_ps \(0\) must be an integer of at least 1 for strategy 'parameter_server'",
        ),
    ],
)
def test_pod_task_spec_errors(kwargs, match):
    arguments = dict(
        strategy="multi_worker",
        task_type="worker",
        index=0,
        num_workers=2,
        template="localhost:{port}",
    )
    arguments.update(kwargs)

    with pytest.raises(LaunchError, match=match):
        pod_task_spec(**arguments)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(name="1st"),
            r"name \('1st'\) must start with a letter: it names the cluster's "
            r"Service",
        ),
        (dict(name="n" * 55), r"name \('n{55}'\) must be a Kubernetes name: at most 54 "),
        (dict(port=0), r"port \(0\) must be an integer in 1..65535"),
        (dict(env={"1X": "a"}), r"env variable '1X'='a' must be NAME=VALUE"),
        (dict(strategy="parameter_server"), r"num_ps \(0\) must be at least 1"),
    ],
)
def test_job_manifest_errors(kwargs, match):
    arguments = dict(name="x", strategy="multi_worker", image="img", command=["t"], num_workers=2)
    arguments.update(kwargs)

    with pytest.raises(LaunchError, match=match):
        job_manifests(**arguments)


def test_cli_kind_job_writes_the_documents(capsys):
    assert (
        main(
            [
                "k8s",
                "--kind=job",
                "--strategy=multi_worker",
                "--image=img",
                "--num_workers=2",
                "--env=A=1",
                "--",
                "python",
                "-m",
                "tfdist.train",
            ]
        )
        == 0
    )

    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in documents] == ["Service", "Job"]
    assert {"name": "A", "value": "1"} in _pod(documents[1])["containers"][0]["env"]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--env=NOVALUE"], "--env=NOVALUE must be NAME=VALUE"),
        (["--port=3000"], "--port (3000) is only used with --kind=job"),
    ],
)
def test_cli_k8s_errors(capsys, argv, match):
    assert main(["k8s", "--strategy=multi_worker", "--image=img", *argv, "--", "x"]) == 2

    captured = capsys.readouterr()
    assert captured.err.startswith("launch: error: ") and match in captured.err


def _task(argv, env):
    full = dict(os.environ, **env)
    full.pop("TF_CONFIG", None)
    return subprocess.run(
        [PY, "-m", "launch.k8s.task", *argv], env=full, capture_output=True, text=True, timeout=60
    )


def test_pod_entry_execs_the_command_with_its_tf_config():
    printer = "import os; print(os.environ['TF_CONFIG'])"
    done = _task(
        [
            "--strategy=multi_worker",
            "--task_type=worker",
            "--num_workers=2",
            "--address_template=d-{task_type}-{index}.d:2222",
            "--",
            PY,
            "-c",
            printer,
        ],
        {"JOB_COMPLETION_INDEX": "1", "HOSTNAME": "d-worker-1"},
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "cluster": {"worker": ["d-worker-0.d:2222", "d-worker-1.d:2222"]},
        "task": {"type": "worker", "index": 1},
    }
    assert (
        "launch.k8s.task: JOB_COMPLETION_INDEX 1 on d-worker-1 is worker:1 of a "
        "multi_worker cluster at d-worker-1.d:2222."
    ) in done.stderr


def test_pod_entry_without_the_index_says_where_it_comes_from():
    done = _task(
        [
            "--strategy=multi_worker",
            "--task_type=worker",
            "--num_workers=2",
            "--address_template=x:{port}",
            "--",
            PY,
            "-c",
            "pass",
        ],
        {},
    )

    assert done.returncode == 2
    assert done.stderr.startswith(
        "launch.k8s.task: error: JOB_COMPLETION_INDEX (None) must "
        "be an integer of at least 0, as Kubernetes sets it"
    )


def test_pod_entry_imports_no_tensorflow_or_numpy():
    code = (
        "import sys, launch.k8s.task, launch.k8s.job; "
        "print(sorted(m for m in ('tensorflow', 'numpy', 'yaml') if m in sys.modules))"
    )

    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout

    assert out.strip() == "[]"


def test_deployment_doc_indexed_job_example_is_what_the_cli_prints(capsys):
    argv, expected = readme_example("python -m launch k8s --kind=job", doc="docs/deployment.md")

    assert main(argv) == 0

    printed = capsys.readouterr().out
    assert printed == expected
    assert [d["kind"] for d in yaml.safe_load_all(printed)] == ["Service", "Job"]
