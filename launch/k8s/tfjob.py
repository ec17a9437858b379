"""Kubernetes: the Kubeflow `TFJob` manifest of a TensorFlow job.

This module owns describing a job for the Kubeflow training operator
(apiVersion `kubeflow.org/v1`, kind `TFJob`): one replica spec per TensorFlow
job (Chief, Worker, PS), each a pod template whose container `tensorflow` runs
the command. The operator creates the pods and services and gives each pod its
TF_CONFIG, which the trainer reads. `tfjob_manifest` is pure (a dict);
writing it as YAML is `launch.k8s.yaml_text`'s job.

Layouts: "mirrored" is one Worker pod with all of its GPUs; "multi_worker" is
`num_workers` Worker pods (worker 0 acts as chief); "parameter_server" is one
Chief pod (the coordinator), `num_ps` PS pods and `num_workers` Worker pods.
Restart policies: a parameter_server worker is restarted on failure (the
coordinator retries its steps); every other pod is never restarted, so a
failure fails the job. `runPolicy.cleanPodPolicy: Running` deletes the pods
still running (the servers) when the job ends.
"""

import re
from typing import Sequence

from launch.errors import LaunchError
from launch.gpus import check_gpus_per_worker
from launch.k8s.yaml_text import dump

K8S_STRATEGIES = ("mirrored", "multi_worker", "parameter_server")
API_VERSION = "kubeflow.org/v1"
KIND = "TFJob"
CONTAINER_NAME = "tensorflow"  # The operator finds the TensorFlow container by this name.
GPU_RESOURCE = "nvidia.com/gpu"

_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or len(value) > 63 or not _NAME.fullmatch(value):
        raise LaunchError(
            f"{what} ({value!r}) must be a Kubernetes name: at most 63 lowercase letters, "
            f"digits and '-', starting and ending with a letter or digit; e.g. --{what}=tfdist.")


def _check_quantity(what: str, value: object) -> None:
    if value is not None and not (isinstance(value, str) and _QUANTITY.fullmatch(value)):
        raise LaunchError(
            f"{what} ({value!r}) must be a Kubernetes quantity such as '2', '500m' or '8Gi'.")


def _resources(*, gpus: int, cpu: str | None, memory: str | None) -> dict:
    amounts = {key: value for key, value in (("cpu", cpu), ("memory", memory)) if value}
    resources = {"requests": dict(amounts)} if amounts else {}
    limits = dict(amounts)
    if gpus:
        limits[GPU_RESOURCE] = gpus
    if limits:
        resources["limits"] = limits
    return resources


def _replica(*, replicas: int, restart_policy: str, image: str, command: Sequence[str],
             resources: dict) -> dict:
    container = {"name": CONTAINER_NAME, "image": image, "command": [command[0]]}
    if len(command) > 1:
        container["args"] = list(command[1:])
    container["env"] = [{"name": "PYTHONUNBUFFERED", "value": "1"}]
    if resources:
        container["resources"] = resources
    return {"replicas": replicas, "restartPolicy": restart_policy,
            "template": {"spec": {"containers": [container]}}}


def tfjob_manifest(
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
) -> dict:
    """Returns the TFJob manifest that runs `command` in every pod.

    Args:
        name: The TFJob's name (a Kubernetes name).
        strategy: One of `K8S_STRATEGIES`.
        image: The container image; it must contain tfdist and the command.
        command: The command each pod runs, e.g. ["python", "-m", "tfdist.train"];
            the first word becomes the container's `command`, the rest its `args`.
        num_workers: Worker pods; 1 for "mirrored".
        num_ps: PS pods: at least 1 for "parameter_server", else 0.
        gpus_per_worker: `nvidia.com/gpu` limit of each Worker pod; 0 for none.
        cpu: CPU request and limit of every pod (e.g. "4"), or None.
        memory: Memory request and limit of every pod (e.g. "8Gi"), or None.
        namespace: The namespace, or None for the current one.

    Raises:
        LaunchError: If an argument is invalid.
    """
    if strategy not in K8S_STRATEGIES:
        raise LaunchError(
            f"Unknown strategy {strategy!r} for a TFJob. "
            f"Expected one of: {', '.join(K8S_STRATEGIES)}.")
    _check_name("name", name)
    if namespace is not None:
        _check_name("namespace", namespace)
    if not isinstance(image, str) or not image or any(char.isspace() for char in image):
        raise LaunchError(
            f"image ({image!r}) must be a container image reference without spaces, e.g. "
            "--image=registry.example.com/tfdist:0.1.0.")
    if (isinstance(command, str) or not isinstance(command, Sequence) or not command
            or not all(isinstance(arg, str) for arg in command)):
        raise LaunchError(
            f"command ({command!r}) must be a non-empty list of strings, e.g. "
            "['python', '-m', 'tfdist.train'].")
    for what, value, minimum in (("num_workers", num_workers, 1), ("num_ps", num_ps, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise LaunchError(
                f"{what} ({value!r}) must be an integer of at least {minimum}; "
                f"pass --{what}={max(minimum, 1)}.")
    check_gpus_per_worker(gpus_per_worker)
    _check_quantity("cpu", cpu)
    _check_quantity("memory", memory)
    if strategy == "mirrored" and num_workers != 1:
        raise LaunchError(
            f"num_workers ({num_workers}) must be 1 for strategy 'mirrored' (one pod over "
            "its GPUs); pass --num_workers=1 or --strategy=multi_worker.")
    if strategy != "parameter_server" and num_ps:
        raise LaunchError(
            f"num_ps ({num_ps}) must be 0 for strategy {strategy!r}; pass --num_ps=0 or "
            "--strategy=parameter_server.")
    if strategy == "parameter_server" and num_ps < 1:
        raise LaunchError(
            "num_ps (0) must be at least 1 for strategy 'parameter_server'; pass --num_ps=1.")
    common = {"image": image, "command": command}
    cpu_only = _resources(gpus=0, cpu=cpu, memory=memory)
    replica_specs = {}
    if strategy == "parameter_server":
        replica_specs["Chief"] = _replica(replicas=1, restart_policy="Never",
                                          resources=cpu_only, **common)
        replica_specs["PS"] = _replica(replicas=num_ps, restart_policy="Never",
                                       resources=cpu_only, **common)
    replica_specs["Worker"] = _replica(
        replicas=num_workers,
        restart_policy="OnFailure" if strategy == "parameter_server" else "Never",
        resources=_resources(gpus=gpus_per_worker, cpu=cpu, memory=memory), **common)
    metadata = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata,
            "spec": {"runPolicy": {"cleanPodPolicy": "Running"},
                     "tfReplicaSpecs": replica_specs}}


def tfjob_yaml(**kwargs) -> str:
    """Returns `tfjob_manifest(**kwargs)` as YAML, headed by a comment."""
    manifest = tfjob_manifest(**kwargs)
    return (f"# Kubeflow TFJob for a {kwargs['strategy']} cluster, generated by "
            "`python -m launch k8s`. Apply: kubectl apply -f FILE\n" + dump(manifest))
