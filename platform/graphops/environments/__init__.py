"""Environments in git: `environment.yaml` (cluster, code, policy) on a shared base, `release.yaml`
(the pinned graphs, written by the controller), loaded strictly (unknown and duplicate keys are
errors, each named with its file and field)."""

from graphops.environments._files import (
    ENVIRONMENTS_DIR,
    environment_names,
    dump_yaml,
    load_environment,
    load_release,
    read_yaml,
    release_path,
    write_release,
)
from graphops.environments._schema import (
    ClusterConfig,
    CodeConfig,
    EnvironmentConfig,
    GraphLock,
    PolicyConfig,
    Release,
    ReleaseEntry,
)

__all__ = [
    "ENVIRONMENTS_DIR",
    "ClusterConfig",
    "CodeConfig",
    "EnvironmentConfig",
    "GraphLock",
    "PolicyConfig",
    "Release",
    "ReleaseEntry",
    "environment_names",
    "dump_yaml",
    "load_environment",
    "load_release",
    "read_yaml",
    "release_path",
    "write_release",
]
