"""tfdist's launcher: plans TensorFlow clusters and runs them as local processes.

`launch` owns two things: planning a cluster and the TF_CONFIG of each of its
tasks (`launch.tf_config`: pure functions), and running those tasks as local
processes (`launch.local`: prepare each task's argv and env apart from
spawning, then spawn, watch, stop, and report the root cause of a failure).
It runs the trainer as a command and never imports TensorFlow or numpy: it is
standard library only. Beyond one machine it hands the job to the engines
people already run: `launch.gpus` (GPUs per task), `launch.hosts` (a command
per task of a multi-host cluster), `launch.slurm.sbatch` with `launch.slurm.task`
(an sbatch script; TF_CONFIG from SLURM_* in each task) and `launch.k8s.tfjob` (a
Kubeflow TFJob manifest). Command line: `python -m launch --help`.
"""

from launch.errors import LaunchError
from launch.gpus import assign_gpus, visible_gpu_ids
from launch.local import TaskLaunch, plan_local_launch, run_local, threads_per_process
from launch.result import LaunchResult, TaskOutcome
from launch.tf_config import (LOCAL_STRATEGIES, TASK_TYPES, ClusterSpec, free_ports,
                              plan_local_cluster, tf_config_json)

__all__ = [
    "LOCAL_STRATEGIES",
    "TASK_TYPES",
    "ClusterSpec",
    "LaunchError",
    "LaunchResult",
    "TaskLaunch",
    "TaskOutcome",
    "assign_gpus",
    "free_ports",
    "plan_local_cluster",
    "plan_local_launch",
    "run_local",
    "tf_config_json",
    "threads_per_process",
    "visible_gpu_ids",
]
