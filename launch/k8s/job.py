"""Kubernetes without an operator: Indexed Jobs and one headless Service per cluster.

This module owns describing a TensorFlow cluster with Kubernetes' own objects
(`batch/v1` Job with `completionMode: Indexed`, `v1` Service) and each pod's
place in it. Kubernetes gives the pod of index i of Job J the hostname `J-i`
and, since the pod's `subdomain` is the Service's name, the DNS name
`J-i.SERVICE`; every pod runs `python -m launch.k8s.task` (`launch.k8s.task`),
which turns JOB_COMPLETION_INDEX and those names into TF_CONFIG
(`pod_task_spec`) and then runs the command. The checks and the container are
`launch.k8s.pods`'; the operator's TFJob is `launch.k8s.tfjob`'s.

Layouts (NAME is the cluster's name, also the Service's):
- "multi_worker": one Indexed Job `NAME-worker` of `num_workers` pods, all
  workers (worker 0 acts as chief); restartPolicy Never and backoffLimit 0,
  so one failed pod fails the Job and Kubernetes stops the others.
- "parameter_server": one Indexed Job per role, `NAME-chief` (1 pod),
  `NAME-ps` (`num_ps`) and `NAME-worker` (`num_workers`), behind the one
  Service. The chief never restarts (its failure fails its Job); ps pods
  neither; worker pods restart in place (`OnFailure`, same DNS name), since
  the coordinator retries their steps. The ps and worker pods exit 0 once the
  chief's port has been open and then stays closed, so every Job completes.
- "mirrored": one plain Job `NAME` of one pod running the command itself (no
  Service, no TF_CONFIG).
"""

import os
import re
from collections.abc import Mapping, Sequence

from launch.errors import LaunchError
from launch.k8s.pods import check_job, check_name, container, resources
from launch.k8s.yaml_text import Manifest, dump
from launch.tf_config import ClusterSpec

DEFAULT_PORT = 2222
# Kubernetes' recommended labels: the app, this cluster (the Service selects its pods), a role.
APP_LABELS = {"app.kubernetes.io/name": "tfdist"}
CLUSTER_LABEL = "app.kubernetes.io/instance"
TASK_TYPE_LABEL = "app.kubernetes.io/component"
ADDRESS_FIELDS = ("task_type", "index", "rank", "port")

_ROLES = {"multi_worker": ("worker",), "parameter_server": ("chief", "worker", "ps")}
_PORT_NAME = "tf-grpc"
_PYTHON_NAME = re.compile(r"python(\d+(\.\d+)*)?")


def role_counts(strategy: str, *, num_workers: int, num_ps: int) -> dict[str, int]:
    """Returns the tasks of each role, in TF_CONFIG order (chief, worker, ps)."""
    counts = {"chief": 1, "worker": num_workers, "ps": num_ps}
    return {role: counts[role] for role in _ROLES[strategy]}


def address_template(name: str, port: int = DEFAULT_PORT) -> str:
    """The pods' addresses: `NAME-{task_type}-{index}.NAME:PORT` (pod hostname . Service)."""
    return f"{name}-{{task_type}}-{{index}}.{name}:{port}"


def _check_template(template: object) -> None:
    if not isinstance(template, str) or not template:
        raise LaunchError(
            f"address_template ({template!r}) must be a non-empty string such "
            "as 'tfdist-{task_type}-{index}.tfdist:2222'."
        )
    try:
        template.format(task_type="worker", index=0, rank=0, port=1)
    except (KeyError, IndexError, ValueError) as error:
        raise LaunchError(
            f"address_template ({template!r}) cannot be filled ({error!r}); use only the "
            f"fields {', '.join('{' + f + '}' for f in ADDRESS_FIELDS)}."
        ) from error


def pod_task_spec(
    *,
    strategy: str,
    task_type: str,
    index: int,
    num_workers: int,
    num_ps: int = 0,
    template: str,
    port_base: int = DEFAULT_PORT,
) -> ClusterSpec:
    """Returns the cluster a pod belongs to, checking that its role and index are in it.

    Args:
        strategy: "multi_worker" or "parameter_server".
        task_type: The pod's role: its Job's "worker", "chief" or "ps".
        index: The pod's JOB_COMPLETION_INDEX.
        num_workers: Worker pods.
        num_ps: ps pods ("parameter_server").
        template: Each task's "host:port", filled with `{task_type}`, `{index}`,
            `{rank}` (the task's place in chief, worker, ps order) and `{port}`
            (`port_base` + rank, for several tasks on one host), e.g.
            `address_template(name)` in the cluster, "localhost:{port}" in a test.
        port_base: See `template`.

    Raises:
        LaunchError: If the role, the index or the template do not fit.
    """
    if strategy not in _ROLES:
        raise LaunchError(
            f"Unknown strategy {strategy!r} for Indexed Jobs. Expected one of: {', '.join(_ROLES)}."
        )
    for what, value, minimum in (
        ("num_workers", num_workers, 1),
        ("num_ps", num_ps, 1 if strategy == "parameter_server" else 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise LaunchError(
                f"{what} ({value!r}) must be an integer of at least {minimum} "
                f"for strategy {strategy!r}; pass --{what}={minimum or 1}."
            )
    _check_template(template)
    counts = role_counts(strategy, num_workers=num_workers, num_ps=num_ps)
    if task_type not in counts:
        raise LaunchError(
            f"task_type ({task_type!r}) is not a role of a {strategy} cluster. "
            f"Expected one of: {', '.join(counts)}."
        )
    if (
        isinstance(index, bool)
        or not isinstance(index, int)
        or not (0 <= index < counts[task_type])
    ):
        raise LaunchError(
            f"JOB_COMPLETION_INDEX ({index!r}) must be in 0..{counts[task_type] - 1} for the "
            f"{counts[task_type]} {task_type} pod(s); run the pod from its Indexed Job."
        )
    jobs: dict[str, list[str]] = {}
    rank = 0
    for role, count in counts.items():
        jobs[role] = []
        for task in range(count):
            jobs[role].append(
                template.format(task_type=role, index=task, rank=rank, port=port_base + rank)
            )
            rank += 1
    return ClusterSpec(jobs={role: tuple(addresses) for role, addresses in jobs.items()})


def _metadata(name: str, namespace: str | None, labels: Mapping[str, str]) -> Manifest:
    metadata: Manifest = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata["labels"] = dict(labels)
    return metadata


def _service(name: str, namespace: str | None, port: int) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, namespace, {**APP_LABELS, CLUSTER_LABEL: name}),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {**APP_LABELS, CLUSTER_LABEL: name},
            "ports": [{"name": _PORT_NAME, "port": port, "targetPort": port}],
        },
    }


def _job(
    *,
    job_name: str,
    cluster: str,
    namespace: str | None,
    role: str,
    count: int,
    restart_policy: str,
    backoff_limit: int,
    pod_container: Manifest,
    indexed: bool,
) -> Manifest:
    labels = {**APP_LABELS, CLUSTER_LABEL: cluster, TASK_TYPE_LABEL: role}
    pod: Manifest = {"restartPolicy": restart_policy, "containers": [pod_container]}
    spec: Manifest = {"completions": count, "parallelism": count, "backoffLimit": backoff_limit}
    if indexed:
        spec["completionMode"] = "Indexed"
        pod = {"subdomain": cluster, **pod}
    spec["template"] = {"metadata": {"labels": labels}, "spec": pod}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(job_name, namespace, labels),
        "spec": spec,
    }


def job_manifests(
    *,
    name: str,
    strategy: str,
    image: str,
    command: Sequence[str],
    num_workers: int = 1,
    num_ps: int = 0,
    gpus_per_worker: int = 0,
    cpu: str | None = None,
    memory: str | None = None,
    namespace: str | None = None,
    env: Mapping[str, str] | None = None,
    port: int = DEFAULT_PORT,
) -> list[Manifest]:
    """Returns the Service and Jobs that run `command` in every pod of the cluster.

    Args:
        name: The cluster's name: the Service's, and the prefix of each Job
            (`NAME-worker`, ...); it starts with a letter (a Service name).
        strategy: One of `launch.k8s.pods.K8S_STRATEGIES`.
        image: The container image; it must contain tfdist and the command.
        command: The command each pod runs; a first word `python`/`python3`
            (or a path to one) also runs the task helper, else `python` does.
        num_workers: Worker pods; 1 for "mirrored".
        num_ps: ps pods: at least 1 for "parameter_server", else 0.
        gpus_per_worker: `nvidia.com/gpu` limit of each worker pod; 0 for none.
        cpu: CPU request and limit of every pod (e.g. "4"), or None.
        memory: Memory request and limit of every pod (e.g. "8Gi"), or None.
        namespace: The namespace, or None for the current one.
        env: Environment variables of every container (besides PYTHONUNBUFFERED=1).
        port: The port every TensorFlow server listens on in its pod.

    Raises:
        LaunchError: If an argument is invalid.
    """
    env = {} if env is None else env
    check_job(
        what="Job",
        name=name,
        strategy=strategy,
        image=image,
        command=command,
        num_workers=num_workers,
        num_ps=num_ps,
        gpus_per_worker=gpus_per_worker,
        cpu=cpu,
        memory=memory,
        namespace=namespace,
        env=env,
    )
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise LaunchError(f"port ({port!r}) must be an integer in 1..65535; e.g. --port=2222.")
    worker_resources = resources(gpus=gpus_per_worker, cpu=cpu, memory=memory)
    if strategy == "mirrored":
        pod = container(image=image, command=command, env=env, resources=worker_resources)
        return [
            _job(
                job_name=name,
                cluster=name,
                namespace=namespace,
                role="worker",
                count=1,
                restart_policy="Never",
                backoff_limit=0,
                pod_container=pod,
                indexed=False,
            )
        ]
    if not name[0].isalpha():
        raise LaunchError(
            f"name ({name!r}) must start with a letter: it names the cluster's "
            "Service; e.g. --name=tfdist."
        )
    counts = role_counts(strategy, num_workers=num_workers, num_ps=num_ps)
    longest = max(len(f"-{role}-{count - 1}") for role, count in counts.items())
    check_name("name", name, max_length=63 - longest)  # Pod hostnames are names too.
    first = os.path.basename(command[0])
    python = command[0] if _PYTHON_NAME.fullmatch(first) else "python"
    template = address_template(name, port)
    manifests = [_service(name, namespace, port)]
    for role, count in counts.items():
        helper = [
            python,
            "-m",
            "launch.k8s.task",
            f"--strategy={strategy}",
            f"--task_type={role}",
            f"--num_workers={num_workers}",
        ]
        helper += [f"--num_ps={num_ps}"] if num_ps else []
        helper += [f"--address_template={template}", "--", *command]
        pod = container(
            image=image,
            command=helper,
            env=env,
            resources=worker_resources
            if role == "worker"
            else resources(gpus=0, cpu=cpu, memory=memory),
            ports=[{"name": _PORT_NAME, "containerPort": port}],
        )
        retried = strategy == "parameter_server" and role == "worker"
        manifests.append(
            _job(
                job_name=f"{name}-{role}",
                cluster=name,
                namespace=namespace,
                role=role,
                count=count,
                restart_policy="OnFailure" if retried else "Never",
                backoff_limit=6 if retried else 0,
                pod_container=pod,
                indexed=True,
            )
        )
    return manifests


def job_yaml(manifests: Sequence[Manifest], *, strategy: str) -> str:
    """Returns `manifests` (from `job_manifests`) as YAML documents, headed by a comment."""
    head = (
        f"# Kubernetes Indexed Job(s) and headless Service for a {strategy} "
        "cluster, generated by\n# `python -m launch k8s --kind=job` (no operator needed). "
        "Apply: kubectl apply -f FILE\n"
    )
    return head + "---\n".join(dump(manifest) for manifest in manifests)
