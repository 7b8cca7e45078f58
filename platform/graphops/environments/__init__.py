"""Environments in git: `environment.yaml` and `release.yaml`, loaded strictly.

`environment.yaml` (cluster, code source, promotion policy) is merged over `base/`;
`release.yaml` holds the pinned graphs, written by the controller. Unknown and duplicate keys are
errors naming the file and the field.
"""

from graphops.environments._cluster import ClusterConfig, Image, PodGroup, WorkerGroup
from graphops.environments._files import (
    ENVIRONMENTS_DIR,
    environment_names,
    load_environment,
    load_release,
    pickle_allowed,
    release_path,
    write_release,
)
from graphops.environments._release import Arm, GraphLock, Release, ReleaseEntry, Shadow, Traffic
from graphops.environments._schema import CodeConfig, EnvironmentConfig, ModelsConfig, PolicyConfig
from graphops.environments._yaml import dump_yaml, parse_yaml, read_yaml, set_scalar
from graphops.environments.rollout import CanaryConfig, RolloutConfig, Strategy

__all__ = [
    "ENVIRONMENTS_DIR",
    "Arm",
    "CanaryConfig",
    "ClusterConfig",
    "CodeConfig",
    "EnvironmentConfig",
    "GraphLock",
    "Image",
    "ModelsConfig",
    "PodGroup",
    "PolicyConfig",
    "Release",
    "ReleaseEntry",
    "RolloutConfig",
    "Shadow",
    "Strategy",
    "Traffic",
    "WorkerGroup",
    "dump_yaml",
    "environment_names",
    "load_environment",
    "load_release",
    "parse_yaml",
    "pickle_allowed",
    "read_yaml",
    "release_path",
    "set_scalar",
    "write_release",
]
