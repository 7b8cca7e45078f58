"""Promotion: pin a graph's lock in an environment after its gates pass, and commit it in git.

The first environment (no upstream) takes the lock from the checkout: the graph's committed files,
the models of its passed validation record (`graphops.controller.lock`). Every later environment
takes the lock that is live upstream, byte for byte, so what was validated is exactly what reaches
production. This module orchestrates: the gates are decided in `graphops.controller.gates`, the
commit and push in `graphops.controller.commit`; an upstream experiment is carried along when
every arm is verified.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path

from graphops.controller.commit import branch_name, commit_change
from graphops.controller.gates import (
    Gate,
    Health,
    Soak,
    promotion_gates,
    record_trust,
    utcnow,
    verify_lock,
)
from graphops.controller.lock import lock_from_checkout, same_lock
from graphops.controller.packaging import publish_archive
from graphops.controller.pin import pin
from graphops.controller.render import versions
from graphops.environments import (
    EnvironmentConfig,
    GraphLock,
    ReleaseEntry,
    Traffic,
    dump_yaml,
    load_environment,
    load_release,
)
from graphops.errors import PromotionError
from graphops.registry import Registry


@dataclass
class Promotion:
    """What `promote` decided and did."""

    graph: str
    env: str
    lock: GraphLock
    gates: list[Gate]
    branch: str | None = None
    commit: str | None = None
    pushed: str | None = None
    files: list[str] = field(default_factory=list)
    traffic: Traffic | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        """Every gate passed."""
        return all(g.passed for g in self.gates)


def promote(
    repo: Path,
    graph: str,
    env_name: str,
    registry: Registry,
    *,
    version: str | None = None,
    now: datetime.datetime | None = None,
    push: str | None = None,
    live: Health | None = None,
    dry_run: bool = False,
) -> Promotion:
    """Check the gates and, when all pass, commit the new lock on ``promote/<env>/<graph>-<v>``.

    Args:
        repo: Repository root (a git checkout; the current branch is left as it was).
        graph: Graph to promote.
        env_name: Target environment.
        registry: The MLflow registry.
        version: Expected version (refused when the lock to promote has another).
        now: The time of the promotion (default: now, UTC).
        push: Push the commit to this branch of ``origin`` (e.g. ``main`` for CI's automatic
            promotion to dev); on a race it re-reads the remote, re-renders and retries.
        live: See `graphops.controller.gates.promotion_gates` (`health_probe`).
        dry_run: Check the gates and make the lock, but write and commit nothing.

    Raises:
        PromotionError: A gate refused (every gate is listed); nothing was written.
    """
    env = load_environment(repo, env_name)
    now = now or utcnow()
    current = load_release(repo, env_name).graphs.get(graph)
    if env.policy.upstream:
        entry = load_release(repo, env.policy.upstream).graphs.get(graph)
        if entry is None:
            raise PromotionError(
                f"Gate upstream: {graph} is not released in {env.policy.upstream}, which "
                f"{env_name} requires first.",
                fix=f"graphops promote {graph} --to {env.policy.upstream}",
                graph=graph,
            )
        lock = entry.lock
    else:
        lock = same_lock(current, lock_from_checkout(repo, graph, registry))
    if version is not None and version != lock.version:
        raise PromotionError(
            f"Got --version {version}, but the lock to promote is {graph} {lock.version}.",
            fix="Promote the version that is validated (or live upstream), or drop --version.",
            graph=graph,
        )
    gates = promotion_gates(repo, registry, env, graph, lock, now, live)
    result = Promotion(graph=graph, env=env_name, lock=lock, gates=gates)
    refused = [g for g in gates if not g.passed]
    if refused:
        raise PromotionError(
            f"Promotion of {graph} {lock.version} to {env_name} refused by gate "
            + "; ".join(f"{g.name}: {g.detail}" for g in refused),
            fix="Nothing was written. Satisfy the gate(s) and promote again.",
            graph=graph,
        )
    if current is not None and current.traffic is not None and current.lock != lock:
        raise PromotionError(
            f"{graph} runs an experiment in {env_name} (control {current.lock.version}, arms "
            f"{', '.join(current.traffic.arms) or '-'}); promoting {lock.version} would replace "
            "its control.",
            fix=f"Conclude it first: graphops experiment conclude {graph} --env {env_name} "
            "--keep <version>; then promote.",
            graph=graph,
        )
    if env.policy.upstream:
        upstream = load_release(repo, env.policy.upstream).graphs[graph]
        result.traffic, result.notes = carry_experiment(
            repo, registry, env, graph, upstream, current, now
        )
    if result.traffic is None and current is not None and current.lock == lock:
        result.traffic = current.traffic  # re-promoting the control keeps its experiment
    unchanged = (
        current is not None
        and current.lock == lock
        and same_traffic(current.traffic, result.traffic)
    )
    if dry_run:
        return result  # a preview: nothing to do
    if unchanged:
        publish_code(repo, env_name)  # already pinned (idempotent); its zip may be missing here
        return result
    result.branch = branch_name(env_name, graph, lock.version)
    _commit(repo, result, now, push)
    return result


def _write(repo: Path, result: Promotion, now: datetime.datetime) -> None:
    previous = load_release(repo, result.env).graphs.get(result.graph)
    overrides = previous.deployments if previous is not None else {}
    entry = ReleaseEntry(
        lock=result.lock, promoted_at=now, deployments=overrides, traffic=result.traffic
    )
    pin(repo, result.env, result.graph, entry)
    publish_code(repo, result.env)


def publish_code(repo: Path, env_name: str) -> list[Path]:
    """Publish the code zip of every version ``env_name`` pins, when it ships code from a store.

    ``code.mode: uri`` with ``code.store``: a ``file://`` store is written here; an object store's
    zips wait in ``.graphops/outbox/`` for CI to upload. Content-addressed, so idempotent.

    Returns:
        The files written or already there.
    """
    env = load_environment(repo, env_name)
    store = env.code.store
    if env.code.delivery != "uri" or store is None:
        return []
    release = load_release(repo, env_name)
    return [
        publish_archive(repo, graph, v.lock.commit, v.lock.package, store)
        for graph, entry in sorted(release.graphs.items())
        for v in versions(graph, entry)
    ]


def carry_experiment(
    repo: Path,
    registry: Registry,
    env: EnvironmentConfig,
    graph: str,
    upstream: ReleaseEntry,
    current: ReleaseEntry | None,
    now: datetime.datetime,
) -> tuple[Traffic | None, list[str]]:
    """The upstream experiment for ``env`` when every arm (and shadow) is verified upstream.

    Verified means: in the upstream experiment for at least the soak time, a passed validation of
    exactly its lock (when required), and its model digests unchanged. Otherwise nothing is
    carried and the notes say why (the graph's lock then takes all of ``env``'s traffic).
    """
    traffic = upstream.traffic
    if traffic is None:
        return None, []
    pinned = [(f"arm {v}", a.lock, a.promoted_at) for v, a in sorted(traffic.arms.items())]
    if traffic.shadow is not None:
        s = traffic.shadow
        pinned.append((f"shadow {s.lock.version}", s.lock, s.promoted_at))
    problems = []
    for name, lock, since in pinned:
        soak = Soak(since, now, env.policy.soak_minutes)
        if not soak.passed:
            problems.append(f"{name} has run in {env.policy.upstream} for {soak.progress}")
        gates = verify_lock(
            registry,
            lock,
            require_validation=env.policy.require_validation,
            trust=record_trust(repo, env),
        )
        problems += [f"{name}: gate {g.name}: {g.detail}" for g in gates if not g.passed]
    if problems:
        return None, [
            f"The experiment of {env.policy.upstream} is not carried ({'; '.join(problems)}): "
            f"{graph} {upstream.lock.version} takes all of {env.name}'s traffic."
        ]
    own = current.traffic if current is not None and current.traffic is not None else Traffic()
    arms = {
        v: a.model_copy(
            update={
                "promoted_at": now,
                "deployments": own.arms[v].deployments if v in own.arms else {},
            }
        )
        for v, a in traffic.arms.items()
    }
    shadow = None
    if traffic.shadow is not None:
        kept = own.shadow.deployments if own.shadow is not None else {}
        shadow = traffic.shadow.model_copy(update={"promoted_at": now, "deployments": kept})
    carried = traffic.model_copy(update={"arms": arms, "shadow": shadow})
    return carried, [f"The experiment of {env.policy.upstream} is carried: every arm is verified."]


def same_traffic(a: Traffic | None, b: Traffic | None) -> bool:
    """Whether two experiments route alike (ignoring when arms were added and their scaling)."""
    if a is None or b is None:
        return a is b

    def key(t: Traffic) -> object:
        arms = {v: (x.lock, x.weight) for v, x in t.arms.items()}
        shadow = (t.shadow.lock, t.shadow.percent) if t.shadow else None
        return (t.weight, t.sticky_key, t.output, arms, shadow)

    return key(a) == key(b)


def _message(result: Promotion) -> str:
    lock = dump_yaml(result.lock.model_dump(mode="json", exclude={"example"}))
    return f"promote {result.graph} {result.lock.version} to {result.env}\n\n{lock}"


def _commit(repo: Path, result: Promotion, now: datetime.datetime, push: str | None) -> None:
    """Commit the promotion on its branch (see `commit_change`) and record where it went."""
    assert result.branch is not None
    done = commit_change(
        repo,
        graph=result.graph,
        branch=result.branch,
        message=_message(result),
        write=lambda: _write(repo, result, now),
        push=push,
    )
    result.commit, result.files, result.pushed = done.commit, done.files, done.pushed
