"""The main job (`graphops demo`): local stand-ins for the environments' services and its steps.

`services` starts and stops local Ray clusters and the MLflow UI; `sandbox` is the GitOps clone
and `graphops` run in it; `validation`, `experiment`, `gitops`, `multinode` and `rollout` are the
steps, and `run` alone strings them together (no step imports another). Sits between the CLI and
the scaffold.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphops.demo.run import down, main_job

from graphops.demo.names import CANARY_GRAPH, STAGING_GRAPH

__all__ = ["CANARY_GRAPH", "STAGING_GRAPH", "down", "main_job", "released_sandbox"]


def released_sandbox(root: Path, env: str | None = None) -> Path | None:
    """The main job's GitOps sandbox of the checkout ``root``, when it releases a graph.

    The demo promotes and applies in a clone (``.graphops/demo/gitops``), never in the checkout:
    this is where `graphops status` in the checkout finds what the demo runs.

    Args:
        root: The repository root the demo ran in.
        env: Only when the sandbox releases a graph in this environment (None: in any).
    """
    from graphops.environments import environment_names, load_release
    from graphops.registry import WORK_DIR

    sandbox = root / WORK_DIR / "demo" / "gitops"
    if not (sandbox / ".git").exists():
        return None
    names = environment_names(sandbox)
    wanted = [e for e in ([env] if env else names) if e in names]
    return sandbox if any(load_release(sandbox, e).graphs for e in wanted) else None


def __getattr__(name: str) -> Any:
    # The steps import Ray, MLflow and git: only when the job runs, not for `graphops --help`.
    if name in ("down", "main_job"):
        from graphops.demo import run as job_run

        return getattr(job_run, name)
    raise AttributeError(f"module 'graphops.demo' has no attribute {name!r}")
