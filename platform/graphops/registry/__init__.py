"""The registry layer: all MLflow access (store location, model resolution, loading, registration)."""

from graphops.registry._integrity import where_of
from graphops.registry._mlflow import WORK_DIR, Registry, ResolvedModel, load_pinned
from graphops.registry._records import (
    ROLLOUT_EXPERIMENT,
    TRUSTED_ENV,
    TRUSTED_TAG,
    RolloutRun,
    ValidationRecord,
)

__all__ = [
    "ROLLOUT_EXPERIMENT",
    "TRUSTED_ENV",
    "TRUSTED_TAG",
    "WORK_DIR",
    "Registry",
    "ResolvedModel",
    "RolloutRun",
    "ValidationRecord",
    "load_pinned",
    "where_of",
]
