"""Kubernetes: what every tfdist pod shares, whichever object runs it.

This module owns the checks of a Kubernetes job's arguments (layout, names,
image, command, counts, quantities, env) and the pod's one container
(`tensorflow`: image, command, env, resources), for both the Kubeflow TFJob
(`launch.k8s.tfjob`) and the plain Indexed Jobs (`launch.k8s.job`). Which
objects carry the pods is those modules' job. Pure standard library.
"""

import re
from collections.abc import Mapping, Sequence

from launch.command import check_command
from launch.errors import LaunchError
from launch.gpus import check_gpus_per_worker
from launch.k8s.yaml_text import Manifest

K8S_STRATEGIES = ("mirrored", "multi_worker", "parameter_server")
CONTAINER_NAME = "tensorflow"  # The training operator finds the TensorFlow container by this name.
GPU_RESOURCE = "nvidia.com/gpu"

_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


def check_name(what: str, value: object, *, max_length: int = 63) -> None:
    """Raises `LaunchError` unless `value` is a Kubernetes name of at most `max_length`."""
    if not isinstance(value, str) or len(value) > max_length or not _NAME.fullmatch(value):
        raise LaunchError(
            f"{what} ({value!r}) must be a Kubernetes name: at most {max_length} lowercase "
            "letters, digits and '-', starting and ending with a letter or digit; e.g. "
            f"--{what}=tfdist."
        )


def _check_quantity(what: str, value: object) -> None:
    if value is not None and not (isinstance(value, str) and _QUANTITY.fullmatch(value)):
        raise LaunchError(
            f"{what} ({value!r}) must be a Kubernetes quantity such as '2', '500m' or '8Gi'."
        )


def check_env(env: object) -> None:
    """Raises `LaunchError` unless `env` maps variable names to strings."""
    if not isinstance(env, Mapping):
        raise LaunchError(f"env ({env!r}) must be a mapping of variable name to value.")
    for key, value in env.items():
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key) or not isinstance(value, str):
            raise LaunchError(
                f"env variable {key!r}={value!r} must be NAME=VALUE with a NAME of letters, "
                "digits and -._ not starting with a digit; e.g. --env=TF_CPP_MIN_LOG_LEVEL=2."
            )


def check_job(
    *,
    what: str,
    name: str,
    strategy: str,
    image: str,
    command: Sequence[str],
    num_workers: int,
    num_ps: int,
    gpus_per_worker: int,
    cpu: str | None,
    memory: str | None,
    namespace: str | None,
    env: Mapping[str, str],
) -> None:
    """Raises `LaunchError` unless the arguments describe a job; `what` names the object."""
    if strategy not in K8S_STRATEGIES:
        raise LaunchError(
            f"Unknown strategy {strategy!r} for a {what}. "
            f"Expected one of: {', '.join(K8S_STRATEGIES)}."
        )
    check_name("name", name)
    if namespace is not None:
        check_name("namespace", namespace)
    if not isinstance(image, str) or not image or any(char.isspace() for char in image):
        raise LaunchError(
            f"image ({image!r}) must be a container image reference without spaces, e.g. "
            "--image=registry.example.com/tfdist:0.1.0."
        )
    check_command("command", command, example="['python', '-m', 'tfdist.train']")
    for label, value, minimum in (("num_workers", num_workers, 1), ("num_ps", num_ps, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise LaunchError(
                f"{label} ({value!r}) must be an integer of at least {minimum}; "
                f"pass --{label}={max(minimum, 1)}."
            )
    check_gpus_per_worker(gpus_per_worker)
    _check_quantity("cpu", cpu)
    _check_quantity("memory", memory)
    check_env(env)
    if strategy == "mirrored" and num_workers != 1:
        raise LaunchError(
            f"num_workers ({num_workers}) must be 1 for strategy 'mirrored' (one pod over "
            "its GPUs); pass --num_workers=1 or --strategy=multi_worker."
        )
    if strategy != "parameter_server" and num_ps:
        raise LaunchError(
            f"num_ps ({num_ps}) must be 0 for strategy {strategy!r}; pass --num_ps=0 or "
            "--strategy=parameter_server."
        )
    if strategy == "parameter_server" and num_ps < 1:
        raise LaunchError(
            "num_ps (0) must be at least 1 for strategy 'parameter_server'; pass --num_ps=1."
        )


def resources(*, gpus: int, cpu: str | None, memory: str | None) -> Manifest:
    """Returns a container's `resources`: cpu/memory requested and limited, GPUs limited."""
    amounts = {key: value for key, value in (("cpu", cpu), ("memory", memory)) if value}
    result: Manifest = {"requests": dict(amounts)} if amounts else {}
    limits: Manifest = dict(amounts)
    if gpus:
        limits[GPU_RESOURCE] = gpus
    if limits:
        result["limits"] = limits
    return result


def container(
    *,
    image: str,
    command: Sequence[str],
    env: Mapping[str, str],
    resources: Manifest,
    ports: Sequence[Manifest] = (),
) -> Manifest:
    """Returns the pod's container `tensorflow`: the first word of `command` is its command."""
    spec: Manifest = {"name": CONTAINER_NAME, "image": image, "command": [command[0]]}
    if len(command) > 1:
        spec["args"] = list(command[1:])
    variables = {"PYTHONUNBUFFERED": "1", **env}
    spec["env"] = [{"name": key, "value": value} for key, value in variables.items()]
    if ports:
        spec["ports"] = list(ports)
    if resources:
        spec["resources"] = resources
    return spec
