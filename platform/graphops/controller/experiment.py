"""A/B experiments and shadow traffic as reviewed changes to ``release.yaml``.

``start`` adds a validated version of a graph as an arm (with a weight) or as the shadow, next to
the version the environment already pins (the control); ``conclude`` keeps one version at 100%
and removes the others. Both commit on a branch, ready for a pull request, like a promotion.
``report`` reads the per-arm figures of the control version's split at ``GET /<graph>/split``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from graphops.controller.cluster import serve_url
from graphops.controller.commit import commit_change
from graphops.controller.gates import Gate, Soak, record_trust, utcnow, verify_lock
from graphops.controller.lock import lock_from_checkout
from graphops.controller.pin import pin
from graphops.environments import (
    Arm,
    GraphLock,
    ReleaseEntry,
    Shadow,
    Traffic,
    dump_yaml,
    load_environment,
    load_release,
)
from graphops.errors import ExperimentError
from graphops.graph import load_graph
from graphops.registry import Registry
from graphops.runtime.split import SPLIT_ROUTE, SplitReport


@dataclass
class ExperimentChange:
    """What `start` or `conclude` decided and committed."""

    graph: str
    env: str
    traffic: Traffic | None
    lock: GraphLock
    gates: list[Gate] = field(default_factory=list)
    branch: str | None = None
    commit: str | None = None
    pushed: str | None = None
    files: list[str] = field(default_factory=list)


def _entry(repo: Path, graph: str, env: str) -> ReleaseEntry:
    entry = load_release(repo, env).graphs.get(graph)
    if entry is None:
        raise ExperimentError(
            f"{graph} is not released in {env}: an experiment needs a control version there.",
            fix=f"Promote it first: graphops promote {graph} --to {env}",
            graph=graph,
        )
    return entry


def _candidate(
    repo: Path, registry: Registry, graph: str, env_name: str, version: str | None
) -> tuple[GraphLock, list[Gate]]:
    """The lock to add and its gates: from the checkout, or (with an upstream) as run there."""
    env = load_environment(repo, env_name)
    now = utcnow()
    placed: list[Gate] = []
    if env.policy.upstream is None:
        lock = lock_from_checkout(repo, graph, registry)
        if version is not None and version != lock.version:
            raise ExperimentError(
                f"Got --version {version}, but the checkout holds {graph} {lock.version}.",
                fix="Check out the commit of that version, or drop --version.",
                graph=graph,
            )
    else:
        upstream = _entry(repo, graph, env.policy.upstream)
        offered = {upstream.lock.version: (upstream.lock, upstream.promoted_at)}
        if upstream.traffic is not None:
            offered |= {v: (a.lock, a.promoted_at) for v, a in upstream.traffic.arms.items()}
            if upstream.traffic.shadow is not None:
                s = upstream.traffic.shadow
                offered[s.lock.version] = (s.lock, s.promoted_at)
        wanted = version or load_graph(repo, graph).graph.version  # the checkout's version
        if wanted not in offered:
            raise ExperimentError(
                f"{graph} {wanted} runs nowhere in {env.policy.upstream}, which {env_name} "
                "requires first.",
                fix=f"Use one of: {', '.join(offered)}; or start it in {env.policy.upstream}.",
                graph=graph,
            )
        lock, since = offered[wanted]
        placed.append(Soak(since, now, env.policy.soak_minutes).gate(env.policy.upstream))
    gates = verify_lock(
        registry,
        lock,
        require_validation=env.policy.require_validation,
        upstream=placed,
        trust=record_trust(repo, env),
    )
    refused = [g for g in gates if not g.passed]
    if refused:
        raise ExperimentError(
            f"{graph} {lock.version} may not take part in an experiment in {env_name}: gate "
            + "; ".join(f"{g.name}: {g.detail}" for g in refused),
            fix="Nothing was written. Validate the version (or let it soak upstream) first.",
            graph=graph,
        )
    return lock, gates


def start(
    repo: Path,
    graph: str,
    env_name: str,
    registry: Registry,
    *,
    weight: float | None = None,
    shadow: float | None = None,
    sticky_key: str | None = None,
    version: str | None = None,
    push: str | None = None,
    dry_run: bool = False,
) -> ExperimentChange:
    """Add a validated version as an arm (``weight`` percent) or as the shadow (``shadow`` percent).

    The control (the version the environment pins) keeps what the arms leave of 100. Starting the
    same version again changes its weight. Committed on ``experiment/<env>/<graph>-<version>``.

    Raises:
        ExperimentError: Neither or both of weight/shadow, no control, a gate refused, or the
            weights no longer fit in 100; nothing was written.
    """
    if (weight is None) == (shadow is None):
        raise ExperimentError(
            "Give --weight (an arm) or --shadow (a shadow), not both and not neither.",
            fix=f"e.g. graphops experiment start {graph} --env {env_name} --weight 10",
            graph=graph,
        )
    entry = _entry(repo, graph, env_name)
    lock, gates = _candidate(repo, registry, graph, env_name, version)
    if lock.version == entry.lock.version:
        raise ExperimentError(
            f"{graph} {lock.version} is already the control in {env_name}.",
            fix="Start an experiment with another version (commit and validate it first).",
            graph=graph,
        )
    now = utcnow()

    def change(current: ReleaseEntry) -> Traffic:
        traffic = current.traffic or Traffic(sticky_key=sticky_key)
        if sticky_key is not None:
            traffic = traffic.model_copy(update={"sticky_key": sticky_key})
        if shadow is not None:
            kept = traffic.shadow.deployments if traffic.shadow else {}
            new = Shadow(lock=lock, percent=shadow, promoted_at=now, deployments=kept)
            return traffic.model_copy(update={"shadow": new})
        assert weight is not None
        old = traffic.arms.get(lock.version)
        arm = Arm(
            lock=lock,
            weight=weight,
            promoted_at=old.promoted_at if old and old.lock == lock else now,
            deployments=old.deployments if old else {},
        )
        arms = dict(traffic.arms) | {lock.version: arm}
        control = 100 - sum(a.weight for a in arms.values())
        if control < 0:
            raise ExperimentError(
                f"The arms of {graph} in {env_name} would take {100 - control:g}% of the traffic.",
                fix="Lower --weight or conclude another arm first.",
                graph=graph,
            )
        return traffic.model_copy(update={"arms": arms, "weight": control})

    traffic = change(entry)
    result = ExperimentChange(graph=graph, env=env_name, traffic=traffic, lock=lock, gates=gates)
    if dry_run:
        return result
    role = f"shadow {shadow:g}%" if shadow is not None else f"{weight:g}%"
    message = f"experiment: {graph} {lock.version} at {role} in {env_name}\n\n" + dump_yaml(
        lock.model_dump(mode="json", exclude={"example"})
    )

    def write() -> None:  # runs again on a rebase: re-read the release there
        current = _entry(repo, graph, env_name)
        pin(repo, env_name, graph, current.model_copy(update={"traffic": change(current)}))

    _commit(repo, result, f"experiment/{env_name}/{graph}-{lock.version}", message, write, push)
    return result


def conclude(
    repo: Path,
    graph: str,
    env_name: str,
    keep: str,
    *,
    push: str | None = None,
) -> ExperimentChange:
    """End the experiment: ``keep`` takes 100% of the stable route, every other arm is removed.

    Raises:
        ExperimentError: No experiment, or ``keep`` is not one of its arms.
    """
    entry = _entry(repo, graph, env_name)
    traffic = entry.traffic
    if traffic is None:
        raise ExperimentError(
            f"{graph} runs no experiment in {env_name}.",
            fix=f"See `graphops status --env {env_name}`.",
            graph=graph,
        )
    arms = {entry.lock.version: (entry.lock, entry.deployments)} | {
        v: (a.lock, a.deployments) for v, a in traffic.arms.items()
    }
    if keep not in arms:
        raise ExperimentError(
            f"Got --keep {keep}, which is no arm of the experiment of {graph} in {env_name}.",
            fix=f"Keep one of: {', '.join(arms)} (a shadow never answers, so it cannot win).",
            graph=graph,
        )
    lock, deployments = arms[keep]
    now = utcnow()
    result = ExperimentChange(graph=graph, env=env_name, traffic=None, lock=lock)
    message = (
        f"experiment: conclude {graph} in {env_name}, keep {keep}\n\n"
        f"removed: {', '.join(v for v in arms if v != keep) or '-'}"
        + (f"; shadow {traffic.shadow.lock.version}" if traffic.shadow else "")
    )

    def write() -> None:
        pin(
            repo,
            env_name,
            graph,
            ReleaseEntry(lock=lock, promoted_at=now, deployments=deployments),
        )

    _commit(repo, result, f"experiment/{env_name}/{graph}-conclude-{keep}", message, write, push)
    return result


def _commit(
    repo: Path,
    result: ExperimentChange,
    branch: str,
    message: str,
    write: Callable[[], None],
    push: str | None,
) -> None:
    result.branch = branch
    done = commit_change(
        repo, graph=result.graph, branch=branch, message=message, write=write, push=push
    )
    result.commit, result.files, result.pushed = done.commit, done.files, done.pushed


def report(repo: Path, graph: str, env_name: str, *, timeout_s: float = 10.0) -> SplitReport:
    """The experiment's per-arm figures, read from the split of the control version's ingress.

    Raises:
        ExperimentError: No experiment in git, or its split cannot be read.
    """
    entry = _entry(repo, graph, env_name)
    if entry.traffic is None:
        raise ExperimentError(
            f"{graph} runs no experiment in {env_name}.",
            fix=f"Start one: graphops experiment start {graph} --env {env_name} --weight 10",
            graph=graph,
        )
    url = f"{serve_url(load_environment(repo, env_name))}/{graph}{SPLIT_ROUTE}"
    try:
        answer = requests.get(url, timeout=timeout_s)
    except requests.RequestException as exc:
        raise ExperimentError(
            f"The split of {graph} in {env_name} did not answer at {url}: {exc}",
            fix=f"Run `graphops apply --env {env_name}` and `graphops status --env {env_name}`.",
            graph=graph,
        ) from exc
    if answer.status_code != 200:
        raise ExperimentError(
            f"{url} answered {answer.status_code}: {answer.text[:300]}",
            fix=f"Apply the experiment first: graphops apply --env {env_name}",
            graph=graph,
        )
    return SplitReport.model_validate_json(answer.content)


def log_report(registry: Registry, env: str, entry: ReleaseEntry, figures: SplitReport) -> str:
    """Log a report to MLflow as a run tied to every arm's lock; returns the run id."""
    import mlflow

    traffic = entry.traffic
    assert traffic is not None
    locks = {entry.lock.version: entry.lock} | {v: a.lock for v, a in traffic.arms.items()}
    if traffic.shadow is not None:
        locks[traffic.shadow.lock.version] = traffic.shadow.lock
    client = registry.client
    experiment = client.get_experiment_by_name("graphops-experiments")
    exp_id = (
        experiment.experiment_id if experiment else client.create_experiment("graphops-experiments")
    )
    graph = figures.graph
    run = client.create_run(
        exp_id,
        run_name=f"{graph}-{env}-{figures.name}",
        tags={"graphops.graph": graph, "graphops.env": env, "graphops.kind": "experiment"},
    )
    rid = run.info.run_id
    for version, lock in locks.items():
        client.log_param(rid, f"lock.{version}.content_hash", lock.content_hash)
        client.log_param(rid, f"lock.{version}.validation_run", lock.validation_run or "-")
    metrics = []
    for arm in figures.arms:
        for name in ("requests", "errors", "error_rate", "p50_ms", "p99_ms", "agreement"):
            if arm.figures.get(name) is not None:
                metrics.append((f"{arm.version}.{name}", float(arm.figures[name])))
    now = int(datetime.datetime.now(datetime.UTC).timestamp() * 1000)
    client.log_batch(
        rid, metrics=[mlflow.entities.Metric(k, v, now, 0) for k, v in metrics], synchronous=True
    )
    client.log_text(rid, figures.model_dump_json(indent=2), "experiment.json")
    client.set_terminated(rid)
    return str(rid)


__all__ = ["ExperimentChange", "conclude", "log_report", "report", "start"]
