"""Reconcile an environment's cluster with git, never letting a graph's stable route go down.

Serve replaces a cluster's whole config at once and keeps no previous version, so `apply` moves in
steps, each a complete config:

1. **candidates**: every application that is new (a new lock) starts beside the running ones, on a
   private route ``/_graphops/candidate/<app>``; once RUNNING it must answer its smoke example;
2. on any failure (DEPLOY_FAILED, timeout, smoke) the previous config is put back and the
   command fails with the reason: the stable routes were never touched;
3. **switch**: the new applications take the stable routes ``/<graph>`` in one config (the old
   ones are parked, still running, with no route). Just before, the new ones leave their
   private routes for none: an ingress replica with no route answers any path, so whichever
   version a balancer still sends a request to at the switch answers it. Ray 2.60's HAProxy
   path needs it: HAProxy learns the new routes before the replicas do, and a replica still on
   its old route would answer 404;
4. **retire**: the old applications are removed.

A graph whose rollout strategy has judged steps (``canary``, ``shadow_canary``: see
`graphops.controller.rollout`) first walks them, the stable version's own ingress splitting its
route; the steps above then finish the move (blue/green is the strategy with no steps). Applying
twice changes nothing. Applications of graphs that git does not know are drift: reported, and
removed only with ``correct_drift``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from graphops.controller.applications import (
    CANDIDATE,
    AppConfig,
    comparable,
    graph_of,
    live_applications,
    smoke,
)
from graphops.controller.cluster import Cluster, serve_url
from graphops.controller.packaging import (
    local_path,
    publish_archive,
    stage_code,
    upload_packages,
    verify_archive,
)
from graphops.controller.placement import check_cpu_nodes
from graphops.controller.render import Rendered, app_name, render, versions
from graphops.controller.rollout import (
    RolloutRecord,
    record_rollout,
    rollouts_due,
    run_rollout,
    strategy_for,
)
from graphops.controller.verify import before_apply
from graphops.environments import EnvironmentConfig, GraphLock, release_path
from graphops.errors import ApplyError, ConfigError, did_you_mean
from graphops.runtime.schema import DeploymentSpec


@dataclass
class ApplyResult:
    """What `apply` changed on the cluster."""

    env: str
    started: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    drift_removed: bool = False
    rollouts: list[RolloutRecord] = field(default_factory=list)
    """Rollouts walked step by step (a strategy with steps), promoted."""

    @property
    def changed(self) -> bool:
        """Whether the cluster changed."""
        return bool(self.started or self.updated or self.retired or self.drift_removed)


def planned_deployments(repo: Path, lock: GraphLock, app: AppConfig) -> dict[str, DeploymentSpec]:
    """The deployments an application runs, as its locked code plans them (name -> spec).

    The graph's code is staged from ``lock``'s commit and planned with the application's args
    (fusion, resource overrides), so the names and resources are those Serve will deploy.

    Args:
        repo: Repository root.
        lock: The application's lock.
        app: The application's Serve config (its ``args`` name the graph).

    Returns:
        Deployment name -> DeploymentSpec.
    """
    from graphops.graph import LockedCode, load_locked
    from graphops.planner import plan
    from graphops.runtime.schema import AppArgs, deployment_specs

    with tempfile.TemporaryDirectory(prefix="graphops-specs-") as tmp:
        graph = app["args"]["graph"]
        code = stage_code(repo, graph, lock.commit, Path(tmp))
        # The code at the lock's commit runs here only if it is the locked code.
        package = load_locked(code, LockedCode(graph, lock.content_hash, lock.manifest))
        args = AppArgs.model_validate(app["args"])
        return {s.name: s for s in deployment_specs(plan(package.graph, fuse=args.fuse), args)}


def check_overrides(repo: Path, rendered: Rendered) -> None:
    """Refuse scaling overrides that name no deployment of their graph version (before Serve does).

    Args:
        repo: Repository root.
        rendered: The environment, as `render` gives it.

    Raises:
        ConfigError: Naming release.yaml, the graph, the override and the deployments there are.
    """
    env_name, release = rendered.env, rendered.release
    apps = {a["name"]: a for a in rendered.config["applications"]}
    for graph, entry in release.graphs.items():
        for version in versions(graph, entry):
            if not version.deployments:
                continue
            known = list(planned_deployments(repo, version.lock, apps[version.app]))
            for name in version.deployments:
                if name not in known:
                    raise ConfigError(
                        f'{graph} {version.lock.version} has no deployment "{name}" to override; '
                        f"it has {', '.join(known)}.{did_you_mean(name, known)}",
                        fix="Fix the deployments: of that graph in release.yaml (see "
                        "`graphops plan`).",
                        file=release_path(repo, env_name),
                    )


def check_archives(
    repo: Path, env: EnvironmentConfig, apps: dict[str, AppConfig], locks: dict[str, GraphLock]
) -> None:
    """Verify the code zip of each new application, whatever its scheme (``code.mode: uri``).

    A missing zip of a ``file://`` store is published first (from the locked commit, checked);
    every zip is then downloaded with Ray's own downloader and must hold the locked code.

    Raises:
        ApplyError: A zip cannot be read or holds other code (see `verify_archive`).
    """
    for name, app in sorted(apps.items()):
        args = app.get("args") or {}
        uri, graph = args.get("code_uri"), graph_of(app)
        if graph is None or not uri:
            continue
        lock = locks[name]
        if env.code.store and uri.startswith("file://") and not local_path(uri).is_file():
            publish_archive(repo, graph, lock.commit, lock.package, env.code.store)
        verify_archive(uri, graph, lock, whole_repository=bool(args.get("code_repository")))


def apply(
    repo: Path,
    env_name: str,
    *,
    timeout_s: float = 300.0,
    correct_drift: bool = False,
    log: Callable[[str], None] = lambda _: None,
    push: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    tracking_uri: str | None = None,
) -> ApplyResult:
    """Make ``env_name``'s cluster run what its committed files say; see the module docstring.

    A graph whose strategy has steps (``rollout`` in environment.yaml) first walks them
    (`graphops.controller.rollout`); its record is committed on the checked-out
    branch (pushed to ``push`` of origin when given) and copied into MLflow at ``tracking_uri``
    (default: ``$MLFLOW_TRACKING_URI``, else the repository's store; a failure there is logged).

    Before it changes anything it verifies git and the cluster (`graphops.controller.verify`):
    signed commits where the policy requires them, each lock against its validation record in
    MLflow at ``tracking_uri``, and the code each running application reports.

    Raises:
        RolloutAborted: A rollout was aborted: the stable version serves alone again, and git
            names it again (committed with the record of why).
        ConfigError: The rendered files are stale (run `graphops render`).
        UnsignedCommitError, LockVerificationError, TamperingError: Refused before any change.
        ApplyError: The cluster is unreachable, refused the token, or a new version failed to
            start or to answer its smoke example (the previous state is then restored).
    """
    rendered = render(repo, env_name)  # once: the checks and the deploy use the same config
    stale = rendered.stale()
    if stale:
        raise ConfigError(
            f"The rendered files of {env_name} are stale: {', '.join(p.name for p in stale)}.",
            fix=f"Run `graphops render --env {env_name}` and commit the result.",
        )
    check_overrides(repo, rendered)
    env, release, desired = rendered.environment, rendered.release, rendered.config
    base = {k: v for k, v in desired.items() if k != "applications"}
    wanted = {a["name"]: a for a in desired["applications"]}
    cluster = Cluster(env)
    if env.cluster.gpus:  # CPU-only work pinned to labelled CPU nodes: is there one?
        check_cpu_nodes(env, cluster.nodes(), list(wanted))
    before_apply(repo, rendered, cluster, tracking_uri, log)  # refuses before any change
    live = live_applications(cluster)
    result = ApplyResult(env=env_name)
    strategies = {g: strategy_for(env.rollout, g) for g in release.graphs}
    for graph, stable in rollouts_due(rendered, live, strategies):
        candidate = app_name(graph, release.graphs[graph].lock)
        _upload(cluster, repo, rendered, [candidate])
        result.rollouts.append(
            run_rollout(
                repo,
                rendered,
                cluster,
                graph,
                strategies[graph],
                stable=live[stable],
                candidate=wanted[candidate],
                live=live,
                timeout_s=timeout_s,
                push=push,
                log=log,
                sleep=sleep,
                tracking_uri=tracking_uri,
            )
        )
        live = live_applications(cluster)
    managed = set(release.graphs)
    unknown = {n: a for n, a in live.items() if graph_of(a) not in managed}
    result.drift = sorted(unknown)
    old = {n: a for n, a in live.items() if n not in wanted and n not in unknown}
    new = [n for n in wanted if n not in live]
    result.updated = [
        n for n in wanted if n in live and comparable(live[n]) != comparable(wanted[n])
    ]
    result.unchanged = [n for n in wanted if n in live and n not in result.updated]
    kept_unknown = [] if correct_drift else list(unknown.values())
    if not (new or result.updated or old or (correct_drift and unknown)):
        return result
    current = [comparable(a) for a in live.values()]
    if new:
        _upload(cluster, repo, rendered, new)
        candidates = [wanted[n] | {"route_prefix": CANDIDATE + n} for n in new]
        log(f"starting {', '.join(new)} beside the running applications")
        cluster.put(current + candidates, base)
        problems = cluster.wait(new, timeout_s)
        if not problems:
            problems = smoke(serve_url(env), {n: wanted[n] for n in new}, wanted)
        if problems:
            log("a new version failed: restoring the previous state")
            cluster.put(current, base)
            cluster.wait(list(live), timeout_s)
            raise ApplyError(
                f"{env_name}: the new version(s) failed, the previous state is restored and "
                "kept serving: " + "; ".join(f"{n}: {why}" for n, why in problems.items()),
                fix="Fix the version (see the reason), promote a new one, or revert the "
                "promotion commit.",
            )
        result.started = new
    _unroute(cluster, base, live, new, wanted, timeout_s)
    parked = [comparable(a) | {"route_prefix": None} for a in old.values()]
    log(f"switching stable routes to {', '.join(wanted) or '(none)'}")
    cluster.put(list(wanted.values()) + parked + kept_unknown, base)
    problems = cluster.wait(list(wanted), timeout_s)
    if problems:
        raise ApplyError(
            f"{env_name}: after the switch, not every application runs: "
            + "; ".join(f"{n}: {why}" for n, why in problems.items()),
            fix="Run `graphops status` and the previous versions are still parked; revert and "
            "apply to go back.",
        )
    if old or (correct_drift and unknown):
        log(f"retiring {', '.join([*old, *(unknown if correct_drift else [])])}")
        cluster.put(list(wanted.values()) + kept_unknown, base)
        result.retired = sorted(old)
        result.drift_removed = correct_drift and bool(unknown)
    for record in result.rollouts:
        log(f"recording the rollout of {record.graph} {record.candidate} in git and MLflow")
        record_rollout(repo, record, revert_to=None, push=push, log=log, tracking_uri=tracking_uri)
    return result


def _unroute(
    cluster: Cluster,
    base: AppConfig,
    live: dict[str, AppConfig],
    new: list[str],
    wanted: dict[str, AppConfig],
    timeout_s: float,
) -> None:
    """Take the wanted applications that are about to change route off their private routes.

    Raises:
        ApplyError: They did not run again within ``timeout_s`` (the stable routes untouched).
    """
    state = {n: comparable(a) for n, a in live.items()}  # as running now, drift included
    state |= {n: wanted[n] | {"route_prefix": CANDIDATE + n} for n in new}
    moving = [
        n
        for n in wanted
        if n in state and state[n].get("route_prefix") not in (None, wanted[n].get("route_prefix"))
    ]
    if not moving:
        return
    for n in moving:
        state[n] = state[n] | {"route_prefix": None}
    cluster.put(list(state.values()), base)
    problems = cluster.wait(moving, timeout_s)
    if problems:
        raise ApplyError(
            "before the switch, not every new version runs: "
            + "; ".join(f"{n}: {why}" for n, why in problems.items()),
            fix="Run `graphops status`; the stable routes still serve the previous versions. "
            "Apply again to resume.",
        )


def _upload(cluster: Cluster, repo: Path, rendered: Rendered, new: list[str]) -> None:
    """Upload the code packages the applications ``new`` need (those shipped as packages)."""
    wanted = {a["name"]: a for a in rendered.config["applications"]}
    locks = {v.app: v.lock for g, e in rendered.release.graphs.items() for v in versions(g, e)}
    needed = {
        locks[n].package: (graph, locks[n].commit)
        for n in new
        if n in locks
        and (graph := graph_of(wanted[n])) is not None
        and (wanted[n].get("runtime_env") or {}).get("working_dir", "").startswith("gcs://")
    }
    upload_packages(cluster, repo, needed)
    check_archives(repo, rendered.environment, {n: wanted[n] for n in new if n in locks}, locks)
