"""Reconcile an environment's cluster with git, never letting a graph's stable route go down.

Serve replaces a cluster's whole config at once and keeps no previous version, so `apply` moves in
steps, each a complete config:

1. **candidates**: every application that is new (a new lock) starts beside the running ones, on a
   private route ``/_graphops/candidate/<app>``; once RUNNING it must answer its smoke example;
2. on any failure (DEPLOY_FAILED, timeout, smoke) the previous config is put back and the
   command fails with the reason: the stable routes were never touched;
3. **switch**: the new applications take the stable routes ``/<graph>`` in one config (the old
   ones are parked on ``/_graphops/previous/<app>``, still running);
4. **retire**: the old applications are removed.

With ``rollout.strategy: canary`` a graph's new version first walks canary steps, the stable
version's own ingress splitting its route (`graphops.controller.rollout`); the steps above then
finish the move. Applying twice
changes nothing. Applications of graphs that git does not know are drift: reported,
and removed only with ``correct_drift``.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from graphops.controller.cluster import Cluster, serve_url
from graphops.controller.packaging import (
    local_path,
    publish_archive,
    stage_code,
    upload_packages,
    verify_archive,
)
from graphops.controller.render import Rendered, app_name, render, versions
from graphops.controller.verify import before_apply
from graphops.environments import EnvironmentConfig, GraphLock, release_path
from graphops.errors import ApplyError, ConfigError, did_you_mean
from graphops.runtime.schema import APP_IMPORT_PATH

CANDIDATE = "/_graphops/candidate/"
PREVIOUS = "/_graphops/previous/"
_COMPARED = ("name", "route_prefix", "import_path", "args", "runtime_env", "deployments")


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
    rollouts: list[Any] = field(default_factory=list)
    """Canary rollouts walked (`graphops.controller.rollout.Rollout`), promoted."""

    @property
    def changed(self) -> bool:
        """Whether the cluster changed."""
        return bool(self.started or self.updated or self.retired or self.drift_removed)


def comparable(app: dict[str, Any]) -> dict[str, Any]:
    """The parts of an application config that git decides (Serve adds defaults to the rest)."""
    return {k: app[k] for k in _COMPARED if app.get(k) not in (None, {}, [])}


def graph_of(app: dict[str, Any]) -> str | None:
    """The graph an application serves, when graphops made it."""
    args = app.get("args") or {}
    return args.get("graph") if app.get("import_path", "").startswith("graphops.") else None


def planned_deployments(repo: Path, lock: GraphLock, app: dict[str, Any]) -> dict[str, Any]:
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
    from graphops.plan import plan
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
    repo: Path, env: EnvironmentConfig, apps: dict[str, dict[str, Any]], locks: dict[str, GraphLock]
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

    A graph whose strategy is ``canary`` (``rollout`` in environment.yaml) first walks its
    canary steps (`graphops.controller.rollout`); its record is committed on the checked-out
    branch (pushed to ``push`` of origin when given) and copied into MLflow at ``tracking_uri``
    (default: ``$MLFLOW_TRACKING_URI``, else the repository's store; a failure there is logged).

    Before it changes anything it verifies git and the cluster (`graphops.controller.verify`):
    signed commits where the policy requires them, each lock against its validation record in
    MLflow at ``tracking_uri``, and the code each running application reports.

    Raises:
        RolloutAborted: A canary was aborted: the stable version serves alone again, and git
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
    before_apply(repo, rendered, cluster, tracking_uri, log)  # refuses before any change
    live = _live(cluster)
    result = ApplyResult(env=env_name)
    for graph, stable in canaries(rendered, live):
        from graphops.controller.rollout import run_canary

        candidate = app_name(graph, release.graphs[graph].lock)
        _upload(cluster, repo, rendered, [candidate])
        result.rollouts.append(
            run_canary(
                repo,
                rendered,
                cluster,
                graph,
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
        live = _live(cluster)
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
            problems = smoke(env_name, serve_url(env), {n: wanted[n] for n in new}, wanted)
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
    parked = [comparable(a) | {"route_prefix": PREVIOUS + n} for n, a in old.items()]
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
    if result.rollouts:
        from graphops.controller.records import record_rollout

        for rollout in result.rollouts:
            log(f"recording the rollout of {rollout.graph} {rollout.candidate} in git and MLflow")
            record_rollout(
                repo, rollout, revert_to=None, push=push, log=log, tracking_uri=tracking_uri
            )
    return result


def _live(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """Live application configs by name; one being deleted (a failed candidate) is not state."""
    return {
        name: app["deployed_app_config"]
        for name, app in cluster.applications().items()
        if app.get("deployed_app_config") and app.get("status") != "DELETING"
    }


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


def canaries(rendered: Rendered, live: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """(graph, stable application) of each graph this apply moves to a new version by canary.

    A graph qualifies when its strategy is ``canary``, git pins one version without an
    experiment, and another version of it serves its route now (or is the stable arm of a
    canary an interrupted apply left behind: the canary starts again from its first step).
    """
    from graphops.controller.rollout import interrupted_stable

    out = []
    for graph, entry in sorted(rendered.release.graphs.items()):
        if rendered.environment.rollout.strategy_of(graph) != "canary" or entry.traffic:
            continue
        candidate = app_name(graph, entry.lock)
        serving = [
            n
            for n, a in live.items()
            if graph_of(a) == graph
            and a.get("route_prefix") == f"/{graph}"
            and a.get("import_path") == APP_IMPORT_PATH
        ]
        stable = serving[0] if len(serving) == 1 else interrupted_stable(graph, live)
        if stable is not None and stable != candidate:
            out.append((graph, stable))
    return out


def smoke(
    env: str, base_url: str, apps: dict[str, dict[str, Any]], wanted: dict[str, dict[str, Any]]
) -> dict[str, str]:
    """POST each candidate its example request; app name -> problem for those that fail.

    A control version that splits its route under an experiment crosses its split as well.
    """
    problems = {}
    for name, app in apps.items():
        example = (app.get("args") or {}).get("example")
        url = base_url + CANDIDATE + name
        try:
            if example is None:
                answer = requests.get(url + "/health", timeout=30)
            else:
                answer = requests.post(url, data=json.dumps(example), timeout=30)
        except requests.RequestException as exc:
            problems[name] = f"smoke request to {url} failed: {exc}"
            continue
        if answer.status_code != 200:
            problems[name] = f"smoke request answered {answer.status_code}: {answer.text[:300]}"
    return problems
