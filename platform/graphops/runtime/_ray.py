"""Connecting to Ray: an existing cluster (``RAY_ADDRESS``) or a local one started on demand."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import ray

_EXCLUDES = [".git", ".nox", ".graphops", "**/__pycache__", "*.parquet.d"]


def ensure_ray(
    repo: Path, *, address: str | None = None, num_cpus: int | None = None
) -> dict[str, Any]:
    """Connect to Ray once per process and return the cluster's resources.

    With ``address`` (or ``$RAY_ADDRESS``) the driver joins that cluster and ships ``repo`` as the
    job's ``working_dir``; otherwise a local cluster is started, sized to this machine, listening on
    loopback only.
    """
    if not ray.is_initialized():
        target = address or os.environ.get("RAY_ADDRESS")
        common: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
        if target:
            ray.init(
                address=target,
                runtime_env={"working_dir": str(repo), "excludes": _EXCLUDES},
                **common,
            )
        else:
            ray.init(
                address="local",  # a new cluster, never a `ray start` one running on this machine
                num_cpus=num_cpus or os.cpu_count(),
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                **common,
            )
    return ray.cluster_resources()


def has_gpus() -> bool:
    """Whether the connected cluster has any GPU."""
    return ray.cluster_resources().get("GPU", 0) > 0
