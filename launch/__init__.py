"""tfdist's launcher: plans TensorFlow clusters and runs them as local processes.

`launch` owns three things: the TF_CONFIG schema (`launch.tf_config`: task
types, cluster and task specs, the jobs of each strategy, TF_CONFIG JSON both
ways), planning a launch (`launch.plan`: one frozen `LaunchSpec` in, a
`LaunchPlan` of per-task argv and env out, nothing started), and running it
(`launch.launcher.run_launch`, over `launch.runner.run_local`: spawn, watch, stop,
and report the root cause of a failure), restarting as one `RestartPolicy` says
(`launch.restarts`: a parameter_server worker in place, else the whole cluster, or
going on with fewer workers). It runs the trainer as a
command and never imports TensorFlow or numpy: it is standard library only.
Beyond one machine it hands the job to the engines people already run:
`launch.gpus` (GPUs per task), `launch.hosts` (a command per task of a
multi-host cluster), `launch.slurm.sbatch` with `launch.slurm.task` (an sbatch
script; TF_CONFIG from SLURM_* in each task) and `launch.k8s.tfjob` (a Kubeflow
TFJob manifest). Command line: `python -m launch --help`.
"""

from launch.errors import LaunchError, check_count
from launch.gpus import assign_gpus, visible_gpu_ids
from launch.launcher import run_launch
from launch.plan import (
    LaunchPlan,
    LaunchSpec,
    plan_launch,
    plan_local_cluster,
    tfdist_server_command,
)
from launch.restarts import RestartPolicy
from launch.result import LaunchResult, RestartReport, TaskOutcome
from launch.runner import run_local
from launch.task_launch import TaskLaunch
from launch.task_plan import plan_local_launch, threads_per_process
from launch.tf_config import (
    CLUSTER_STRATEGIES,
    STRATEGY_LAYOUTS,
    TASK_TYPES,
    ClusterConfig,
    ClusterSpec,
    TaskSpec,
    free_ports,
    parse_tf_config,
    tf_config_json,
)

__all__ = [
    "CLUSTER_STRATEGIES",
    "STRATEGY_LAYOUTS",
    "TASK_TYPES",
    "ClusterConfig",
    "ClusterSpec",
    "LaunchError",
    "LaunchPlan",
    "LaunchResult",
    "LaunchSpec",
    "RestartPolicy",
    "RestartReport",
    "TaskLaunch",
    "TaskOutcome",
    "TaskSpec",
    "assign_gpus",
    "check_count",
    "free_ports",
    "parse_tf_config",
    "plan_launch",
    "plan_local_cluster",
    "plan_local_launch",
    "run_launch",
    "run_local",
    "tf_config_json",
    "tfdist_server_command",
    "threads_per_process",
    "visible_gpu_ids",
]
