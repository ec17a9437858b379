"""Settings: the shared vocabulary, the training loop's settings and the built-in job's.

`tfdist.config.checks` holds the valid names and the checks of single values,
`tfdist.config.loop` the loop's settings (`LoopConfig` with `CommunicationConfig`,
`LocalSGDConfig`, `CheckpointConfig`) and their rules, `tfdist.config.job` the command
line's `JobConfig` and its sections. This package is standard library only: the launcher
and the command line use it before TensorFlow starts.
"""

from tfdist.config.checks import (
    COLLECTIVE_IMPLEMENTATIONS,
    COMPRESSIONS,
    DEFAULT_CPU_REPLICAS,
    FILE_DATASETS,
    OPTIMIZERS,
    OUTER_OPTIMIZERS,
    PRECISIONS,
    SHARD_POLICIES,
    STRATEGIES,
    ConfigError,
    check_choice,
    check_image_shape,
    check_image_size,
    check_positive,
    check_profile_steps,
    describe_choices,
    nearest_multiples,
    parse_image_shape,
    parse_image_size,
    parse_profile_steps,
    per_replica_batch_size,
)
from tfdist.config.job import DataConfig, JobConfig, LaunchConfig, ModelConfig, OutputConfig
from tfdist.config.loop import (
    CheckpointConfig,
    CommunicationConfig,
    LocalSGDConfig,
    LoopConfig,
    check_count,
    check_loop_fits,
)

__all__ = [
    "COLLECTIVE_IMPLEMENTATIONS",
    "COMPRESSIONS",
    "DEFAULT_CPU_REPLICAS",
    "FILE_DATASETS",
    "OPTIMIZERS",
    "OUTER_OPTIMIZERS",
    "PRECISIONS",
    "SHARD_POLICIES",
    "STRATEGIES",
    "CheckpointConfig",
    "CommunicationConfig",
    "ConfigError",
    "DataConfig",
    "JobConfig",
    "LaunchConfig",
    "LocalSGDConfig",
    "LoopConfig",
    "ModelConfig",
    "OutputConfig",
    "check_choice",
    "check_count",
    "check_image_shape",
    "check_image_size",
    "check_loop_fits",
    "check_positive",
    "check_profile_steps",
    "describe_choices",
    "nearest_multiples",
    "parse_image_shape",
    "parse_image_size",
    "parse_profile_steps",
    "per_replica_batch_size",
]
