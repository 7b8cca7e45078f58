"""The registry layer: all MLflow access (store location, model resolution, loading, registration)."""

from graphops.registry._integrity import where_of
from graphops.registry._mlflow import WORK_DIR, Registry
from graphops.registry._pinned import ResolvedModel, load_pinned
from graphops.registry._records import (
    ROLLOUT_EXPERIMENT,
    TRUSTED_ENV,
    TRUSTED_TAG,
    RolloutRunForm,
    ValidationRecord,
)

__all__ = [
    "ROLLOUT_EXPERIMENT",
    "TRUSTED_ENV",
    "TRUSTED_TAG",
    "WORK_DIR",
    "Registry",
    "ResolvedModel",
    "RolloutRunForm",
    "ValidationRecord",
    "load_pinned",
    "where_of",
]
