"""What a merge would change (`diff`) and what runs where (`status`): git against the clusters."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from graphops.controller.applications import comparable, graph_of
from graphops.controller.apply import planned_deployments
from graphops.controller.capacity import Amount, Peak, node_totals, peak, reserved
from graphops.controller.cluster import Cluster, serve_url
from graphops.controller.placement import (
    Replica,
    is_cpu_node,
    kinds,
    node_ids,
    replicas,
    unplaceable,
)
from graphops.controller.render import serve_config, versions
from graphops.controller.verify import running
from graphops.environments import (
    ReleaseEntry,
    environment_names,
    load_environment,
    load_release,
)
from graphops.errors import GraphOpsError, MissingTokenError, TokenRefusedError

Change = Literal["in place", "replica restart", "new", "removed", "unchanged"]
UNREADABLE = ("unreachable", "no token", "token refused")
"""Live states of an environment whose cluster could not be read (`graphops status` exits 1)."""
_IN_PLACE = {"num_replicas", "autoscaling_config", "max_ongoing_requests", "user_config", "route"}


class DeploymentChange(BaseModel):
    """One deployment of one application, and how a merge changes it."""

    app: Annotated[str, Field(description="Serve application.")]
    deployment: Annotated[str, Field(description="Deployment name.")]
    change: Annotated[Change, Field(description="How it changes.")]
    why: Annotated[str, Field(description="What differs.")] = ""
    cpus: Annotated[float, Field(description="CPU delta (all replicas).")] = 0.0
    gpus: Annotated[float, Field(description="GPU delta (all replicas).")] = 0.0
    memory: Annotated[float, Field(description="Memory delta in bytes (all replicas).")] = 0.0
    cpu_only: Annotated[bool, Field(description="The deployment asks for no GPU.")] = True
    replicas: Annotated[
        int, Field(description="Replicas it starts with after the change (0: removed).")
    ] = 0

    @property
    def single_point(self) -> bool:
        """It would run on one replica: losing that replica is an outage of its graph."""
        return self.replicas == 1


SPOF_FIX = (
    "set policy.min_replicas: 2 in the environment.yaml (or replicas: 2 for the deployment in "
    "release.yaml) so that losing one replica loses no request."
)


def _single_replica(details: dict[str, Any]) -> list[str]:
    """Deployments of a live application that run on exactly one replica."""
    out = []
    for name, d in (details.get("deployments") or {}).items():
        running = [r for r in d.get("replicas") or [] if r.get("state") == "RUNNING"]
        if len(running) == 1:
            out.append(name)
    return out


def _code(app: dict[str, Any]) -> dict[str, Any]:
    """What restarts every replica when it changes: all but the route and per-deployment parts."""
    args = {k: v for k, v in (app.get("args") or {}).items() if k != "deployments"}
    skip = ("args", "route_prefix", "deployments")
    return {k: v for k, v in app.items() if k not in skip} | {"args": args}


def _override(app: dict[str, Any], deployment: str) -> dict[str, Any]:
    """One deployment's overrides in an application config: resources (args) and scaling (config)."""
    out = dict(((app.get("args") or {}).get("deployments") or {}).get(deployment) or {})
    for entry in app.get("deployments") or []:
        if entry.get("name") == deployment:
            out |= {k: v for k, v in entry.items() if k != "name"}
    return out


def _listed(app: dict[str, Any], deployment: str) -> bool:
    return any(e.get("name") == deployment for e in app.get("deployments") or [])


def _replicas(override: dict[str, Any], declared: int) -> int:
    """Replicas a deployment starts with under its overrides."""
    bounds = override.get("autoscaling_config") or {}
    return int(
        override.get("num_replicas")
        or bounds.get("initial_replicas")
        or bounds.get("min_replicas")
        or declared
    )


def diff(repo: Path, env_name: str) -> list[DeploymentChange]:
    """Per deployment: what applying the committed files to the live cluster would change."""
    env = load_environment(repo, env_name)
    release = load_release(repo, env_name)
    wanted = {a["name"]: a for a in serve_config(env, release)["applications"]}
    locks = {v.app: v.lock for g, e in release.graphs.items() for v in versions(g, e)}
    live = Cluster(env).applications()
    changes: list[DeploymentChange] = []
    for name, app in wanted.items():
        lock = locks[name]
        specs = planned_deployments(repo, lock, app)
        if name not in live:
            for spec in specs.values():
                r = _replicas(_override(app, spec.name), spec.scaling.replicas)
                changes.append(
                    DeploymentChange(
                        app=name,
                        deployment=spec.name,
                        change="new",
                        why=f"lock {lock.version}",
                        cpus=spec.cpus * r,
                        gpus=spec.gpus * r,
                        memory=(spec.memory or 0) * r,
                        cpu_only=not spec.gpus,
                        replicas=r,
                    )
                )
            continue
        before = comparable(live[name].get("deployed_app_config") or {})
        after = comparable(app)
        live_res = reserved(live[name])
        for spec in specs.values():
            old_o, new_o = _override(before, spec.name), _override(after, spec.name)
            other_before, other_after = _code(before), _code(after)
            keys = {k for k in set(old_o) | set(new_o) if old_o.get(k) != new_o.get(k)}
            if before.get("route_prefix") != after.get("route_prefix"):
                keys.add("route")  # moving a route is in place (measured: no failed request)
            if _listed(before, spec.name) != _listed(after, spec.name) and after.get("runtime_env"):
                # Serve merges the application's runtime_env into the actor options of the
                # deployments its config lists, only those: listing one (its first scaling
                # override) or unlisting it changes its actor options, so its replicas restart.
                keys.add("first or last scaling override")
            r = _replicas(new_o, spec.scaling.replicas)
            now = Amount(cpus=spec.cpus * r, gpus=spec.gpus * r, memory=(spec.memory or 0) * r)
            delta = (now - live_res.get(spec.name, Amount())).rounded().model_dump()
            change: Change
            if other_before != other_after:
                change, why = "replica restart", "code, models or code source"
            elif keys - _IN_PLACE:
                change, why = "replica restart", ", ".join(sorted(keys))
            elif keys:
                change, why = "in place", ", ".join(sorted(keys))
            else:
                changes.append(
                    DeploymentChange(app=name, deployment=spec.name, change="unchanged", replicas=r)
                )
                continue
            changes.append(
                DeploymentChange(
                    app=name,
                    deployment=spec.name,
                    change=change,
                    why=why,
                    replicas=r,
                    cpu_only=not spec.gpus,
                    **delta,
                )
            )
    for name, details in live.items():
        if name in wanted:
            continue
        for dep, held in reserved(details).items():
            known = graph_of(details.get("deployed_app_config") or {}) in release.graphs
            changes.append(
                DeploymentChange(
                    app=name,
                    deployment=dep,
                    change="removed",
                    why="replaced by a new lock" if known else "not in git (drift)",
                    cpus=-held.cpus,
                    gpus=-held.gpus,
                    memory=-held.memory,
                    cpu_only=not held.gpus,
                )
            )
    return changes


def rollout_peak(repo: Path, env_name: str, changes: list[DeploymentChange]) -> Peak:
    """What ``changes`` hold at their rollout's peak against the live cluster's room.

    The room is read live (nodes and Serve's replicas); a cluster that cannot be read leaves it
    unknown (the peak is still shown). Where CPU-only work must run on labelled CPU nodes
    (`cluster.gpus`), their free CPUs are read too.
    """
    deltas = [
        (c.change, Amount(cpus=c.cpus, gpus=c.gpus, memory=c.memory), c.cpu_only) for c in changes
    ]
    env = load_environment(repo, env_name)
    try:
        cluster = Cluster(env, timeout_s=10)
        nodes = cluster.nodes()
        held = [a for app in cluster.applications().values() for a in reserved(app).values()]
    except GraphOpsError:
        return peak(deltas)
    cpu_node_free = None
    if env.cluster.gpus:  # CPU-only replicas select the CPU nodes: their room is what counts
        labelled = node_totals([n for n in nodes if is_cpu_node(n)]).cpus
        cpu_node_free = labelled - sum(a.cpus for a in held if not a.gpus)
    return peak(
        deltas,
        in_use=Amount.total(held),
        capacity=node_totals(nodes),
        cpu_node_free=cpu_node_free,
    )


class GraphStatus(BaseModel):
    """One graph in one environment: what git pins and what runs."""

    env: str
    graph: str
    version: str
    lock: Annotated[str, Field(description="Content hash of the lock (short).")]
    validation_run: str | None
    since: str
    app: str
    live: Annotated[
        str,
        Field(
            description="RUNNING, DEPLOY_FAILED, ..., absent; or, when the cluster could not be "
            "read: unreachable, no token or token refused (see `problem`)."
        ),
    ]
    drift: Annotated[bool, Field(description="The live config differs from git.")] = False
    traffic: Annotated[
        str, Field(description="The split under an experiment, e.g. '1.0.0 90% · 1.1.0 10%'.")
    ] = ""
    problem: Annotated[
        str,
        Field(description="Why the cluster could not be read, and what to do (empty when read)."),
    ] = ""
    single_points: Annotated[
        list[str],
        Field(
            description="Live deployments (application/deployment) running on one replica: "
            "single points of failure."
        ),
    ] = []
    tampering: Annotated[
        list[str],
        Field(
            description="Running applications whose reported content hash differs from their "
            "lock (GET <route>/health): 'app: expected X, reported Y'. Empty when all match."
        ),
    ] = []
    placement: Annotated[
        dict[str, list[str]],
        Field(
            description="Live application/deployment -> the Ray node ids of its RUNNING "
            "replicas, one per replica: where each stage runs (GPU stages on GPU nodes)."
        ),
    ] = {}
    replicas: Annotated[
        list[Replica],
        Field(
            description="Each running replica: its node, the node's kind, whether it is "
            "CPU-only and misplaced (CPU-only on a GPU node)."
        ),
    ] = []
    placement_problem: Annotated[
        str,
        Field(description="Why CPU-only work can run on no node of the cluster ('' if it can)."),
    ] = ""


def _unreadable(exc: GraphOpsError) -> str:
    """The live state shown for a cluster that raised ``exc`` when asked."""
    if isinstance(exc, MissingTokenError):
        return "no token"
    if isinstance(exc, TokenRefusedError):
        return "token refused"
    return "unreachable"


def _traffic(entry: ReleaseEntry) -> str:
    t = entry.traffic
    if t is None:
        return ""
    parts = [f"{entry.lock.version} {t.weight:g}%"]
    parts += [f"{v} {a.weight:g}%" for v, a in sorted(t.arms.items())]
    if t.shadow is not None:
        parts.append(f"shadow {t.shadow.lock.version} {t.shadow.percent:g}%")
    return " · ".join(parts) + (f" (sticky: {t.sticky_key})" if t.sticky_key else "")


def status(repo: Path, env: str | None = None) -> list[GraphStatus]:
    """Every graph of every environment (or of ``env``): pinned lock, live state, drift.

    Each running application with a route is asked what code it runs (one ``GET <route>/health``);
    one that reports another content hash than its lock shows live ``TAMPERED`` (``tampering``).
    """
    out = []
    for name in [env] if env else environment_names(repo):
        config = load_environment(repo, name)
        release = load_release(repo, name)
        apps = {a["name"]: a for a in serve_config(config, release)["applications"]}
        problem, unread, nodes = "", "", []
        try:  # an environment with no cluster address (prod outside CI) raises here too
            cluster = Cluster(config, timeout_s=5)
            live: dict[str, Any] | None = cluster.applications()
        except GraphOpsError as exc:
            live, unread, problem = None, _unreadable(exc), str(exc)
        if live is not None:
            with contextlib.suppress(GraphOpsError):
                nodes = cluster.nodes()  # the kind of node of each replica
        node_kinds = kinds(nodes)
        locks = {v.app: v.lock for g, e in release.graphs.items() for v in versions(g, e)}
        reports = {}
        if live is not None:  # no Serve address configured: nothing to ask
            with contextlib.suppress(GraphOpsError):
                asked = running(serve_url(config), live, locks, timeout_s=5)
                reports = {r.app: r for r in asked}
        for graph, entry in sorted(release.graphs.items()):
            names = [v.app for v in versions(graph, entry)]
            tampered = [
                f"{n}: expected {r.expected}, reported {r.reported}"
                for n in names
                if (r := reports.get(n)) is not None and r.tampered
            ]
            states, drift, single = [], False, []
            placement: dict[str, list[str]] = {}
            placed: list[Replica] = []
            for app_name in names:
                details = (live or {}).get(app_name)
                single += [f"{app_name}/{d}" for d in _single_replica(details or {})]
                placement |= {f"{app_name}/{d}": n for d, n in node_ids(details or {}).items()}
                placed += replicas(app_name, details or {}, node_kinds)
                states.append(
                    unread if live is None else details["status"] if details else "absent"
                )
                drift = drift or (
                    details is not None
                    and comparable(details.get("deployed_app_config") or {})
                    != comparable(apps[app_name])
                )
            worst = next((st for st in states if st != "RUNNING"), "RUNNING")
            out.append(
                GraphStatus(
                    env=name,
                    graph=graph,
                    version=entry.lock.version,
                    lock=entry.lock.content_hash[:19],
                    validation_run=entry.lock.validation_run,
                    since=entry.promoted_at.isoformat(),
                    app=names[0],
                    live="TAMPERED" if tampered else worst,
                    tampering=tampered,
                    drift=drift,
                    traffic=_traffic(entry),
                    problem=problem,
                    single_points=single,
                    placement=placement,
                    replicas=placed,
                    placement_problem=unplaceable(config, nodes, names) if nodes else "",
                )
            )
    return out
