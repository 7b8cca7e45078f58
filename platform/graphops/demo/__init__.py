"""The main job (`graphops demo`): local stand-ins for the environments' services and its steps.

`services` starts and stops local Ray clusters and the MLflow UI; `job`, `gitops`, `canary` and
`experiment` are the steps `run` strings together. Sits between the CLI and the scaffold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphops.demo.run import down, main_job

STAGING_GRAPH = "digits"
"""The graph the main job also promotes to staging."""
CANARY_GRAPH = "digits"
"""The graph whose new versions the main job rolls out by canary in dev (one good, one broken)."""

__all__ = ["CANARY_GRAPH", "STAGING_GRAPH", "down", "main_job"]


def __getattr__(name: str) -> Any:
    # The steps import Ray, MLflow and git: only when the job runs, not for `graphops --help`.
    if name in ("down", "main_job"):
        from graphops.demo import run

        return getattr(run, name)
    raise AttributeError(f"module 'graphops.demo' has no attribute {name!r}")
