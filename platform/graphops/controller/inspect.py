"""What a merge would change (`diff`) and what runs where (`status`): git against the clusters."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from graphops.controller.apply import comparable, graph_of
from graphops.controller.cluster import Cluster
from graphops.controller.promote import stage_code
from graphops.controller.render import serve_config
from graphops.environments import (
    ReleaseEntry,
    environment_names,
    load_environment,
    load_release,
)
from graphops.errors import GraphOpsError

Change = Literal["in place", "replica restart", "new", "removed", "unchanged"]
_IN_PLACE = {"replicas", "min_replicas", "max_replicas", "max_ongoing_requests"}


class DeploymentChange(BaseModel):
    """One deployment of one application, and how a merge changes it."""

    app: Annotated[str, Field(description="Serve application.")]
    deployment: Annotated[str, Field(description="Deployment name.")]
    change: Annotated[Change, Field(description="How it changes.")]
    why: Annotated[str, Field(description="What differs.")] = ""
    cpus: Annotated[float, Field(description="CPU delta (all replicas).")] = 0.0
    gpus: Annotated[float, Field(description="GPU delta (all replicas).")] = 0.0


def _specs(repo: Path, entry: ReleaseEntry, app: dict[str, Any]) -> dict[str, Any]:
    """Deployment name -> DeploymentSpec of an application, from the graph code at its commit."""
    from graphops.graph import load_graph
    from graphops.plan import plan
    from graphops.runtime._args import AppArgs
    from graphops.runtime.online import specs_for

    with tempfile.TemporaryDirectory(prefix="graphops-diff-") as tmp:
        code = stage_code(repo, app["args"]["graph"], entry.lock.commit, Path(tmp))
        package = load_graph(code, app["args"]["graph"])
        args = AppArgs.model_validate(app["args"])
        return {s.name: s for s in specs_for(plan(package.graph, fuse=args.fuse), args)}


def _live_deployments(details: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Deployment -> (CPUs, GPUs) over all replicas, from Serve's live details."""
    out = {}
    for name, d in (details.get("deployments") or {}).items():
        config = d.get("deployment_config") or {}
        actor = config.get("ray_actor_options") or {}
        replicas = len(d.get("replicas") or []) or config.get("num_replicas") or 1
        out[name] = (
            float(actor.get("num_cpus") or 0) * replicas,
            float(actor.get("num_gpus") or 0) * replicas,
        )
    return out


def diff(repo: Path, env_name: str) -> list[DeploymentChange]:
    """Per deployment: what applying the committed files to the live cluster would change."""
    env = load_environment(repo, env_name)
    release = load_release(repo, env_name)
    wanted = {a["name"]: a for a in serve_config(env, release)["applications"]}
    live = Cluster(env).applications()
    changes: list[DeploymentChange] = []
    for name, app in wanted.items():
        entry = release.graphs[app["args"]["graph"]]
        specs = _specs(repo, entry, app)
        if name not in live:
            for spec in specs.values():
                r = spec.scaling.replicas
                changes.append(
                    DeploymentChange(
                        app=name,
                        deployment=spec.name,
                        change="new",
                        why=f"lock {entry.lock.version}",
                        cpus=spec.cpus * r,
                        gpus=spec.gpus * r,
                    )
                )
            continue
        before = comparable(live[name].get("deployed_app_config") or {})
        after = comparable(app)
        live_res = _live_deployments(live[name])
        for spec in specs.values():
            old_o = ((before.get("args") or {}).get("deployments") or {}).get(spec.name, {})
            new_o = ((after.get("args") or {}).get("deployments") or {}).get(spec.name, {})
            other_before = {k: v for k, v in before.items() if k != "args"} | {
                "args": {k: v for k, v in (before.get("args") or {}).items() if k != "deployments"}
            }
            other_after = {k: v for k, v in after.items() if k != "args"} | {
                "args": {k: v for k, v in (after.get("args") or {}).items() if k != "deployments"}
            }
            keys = {k for k in set(old_o) | set(new_o) if old_o.get(k) != new_o.get(k)}
            cpus, gpus = live_res.get(spec.name, (0.0, 0.0))
            r = spec.scaling.replicas
            delta = {"cpus": spec.cpus * r - cpus, "gpus": spec.gpus * r - gpus}
            if other_before != other_after:
                changes.append(
                    DeploymentChange(
                        app=name,
                        deployment=spec.name,
                        change="replica restart",
                        why="code, models or code source",
                        **delta,
                    )
                )
            elif keys - _IN_PLACE:
                changes.append(
                    DeploymentChange(
                        app=name,
                        deployment=spec.name,
                        change="replica restart",
                        why=", ".join(sorted(keys)),
                        **delta,
                    )
                )
            elif keys:
                changes.append(
                    DeploymentChange(
                        app=name,
                        deployment=spec.name,
                        change="in place",
                        why=", ".join(sorted(keys)),
                        **delta,
                    )
                )
            else:
                changes.append(DeploymentChange(app=name, deployment=spec.name, change="unchanged"))
    for name, details in live.items():
        if name in wanted:
            continue
        for dep, (cpus, gpus) in _live_deployments(details).items():
            known = graph_of(details.get("deployed_app_config") or {}) in release.graphs
            changes.append(
                DeploymentChange(
                    app=name,
                    deployment=dep,
                    change="removed",
                    why="replaced by a new lock" if known else "not in git (drift)",
                    cpus=-cpus,
                    gpus=-gpus,
                )
            )
    return changes


class GraphStatus(BaseModel):
    """One graph in one environment: what git pins and what runs."""

    env: str
    graph: str
    version: str
    lock: Annotated[str, Field(description="Content hash of the lock (short).")]
    validation_run: str | None
    since: str
    app: str
    live: Annotated[str, Field(description="RUNNING, DEPLOY_FAILED, ..., absent or unreachable.")]
    drift: Annotated[bool, Field(description="The live config differs from git.")] = False


def status(repo: Path, env: str | None = None) -> list[GraphStatus]:
    """Every graph of every environment (or of ``env``): pinned lock, live state, drift."""
    out = []
    for name in [env] if env else environment_names(repo):
        config = load_environment(repo, name)
        release = load_release(repo, name)
        wanted = {a["args"]["graph"]: a for a in serve_config(config, release)["applications"]}
        try:
            live: dict[str, Any] | None = Cluster(config, timeout_s=5).applications()
        except GraphOpsError:
            live = None
        for graph, entry in sorted(release.graphs.items()):
            app = wanted[graph]
            details = (live or {}).get(app["name"])
            state = "unreachable" if live is None else details["status"] if details else "absent"
            drift = bool(details) and comparable(
                details.get("deployed_app_config") or {}
            ) != comparable(app)
            out.append(
                GraphStatus(
                    env=name,
                    graph=graph,
                    version=entry.lock.version,
                    lock=entry.lock.content_hash[:19],
                    validation_run=entry.lock.validation_run,
                    since=entry.promoted_at.isoformat(),
                    app=app["name"],
                    live=state,
                    drift=drift,
                )
            )
    return out
