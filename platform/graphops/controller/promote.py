"""Promotion: pin a graph's lock in an environment after its gates pass, and commit it in git.

The first environment (no upstream) takes the lock from the checkout: the graph's committed files,
the models of its passed validation record. Every later environment takes the lock that is live
upstream, byte for byte, so what was validated is exactly what reaches production.
"""

from __future__ import annotations

import datetime
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import git

import graphops
from graphops.controller.render import render
from graphops.environments import (
    ENVIRONMENTS_DIR,
    EnvironmentConfig,
    GraphLock,
    ReleaseEntry,
    dump_yaml,
    load_environment,
    load_release,
    write_release,
)
from graphops.errors import GraphOpsError, PromotionError
from graphops.graph import GRAPHS_DIR, load_graph
from graphops.registry import Registry, ValidationRecord
from graphops.validation.changes import current_commit, is_dirty

PUSH_ATTEMPTS = 5


@dataclass(frozen=True)
class Gate:
    """One promotion gate and its verdict."""

    name: str
    passed: bool
    detail: str


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

    @property
    def allowed(self) -> bool:
        """Every gate passed."""
        return all(g.passed for g in self.gates)


def utcnow() -> datetime.datetime:
    """Now, in UTC, to the second (what release.yaml records)."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def package_uri(repo: Path, graph: str, commit: str) -> str:
    """Ray's content-addressed URI of ``graphs/<graph>/`` (plus ``graphs/__init__.py``) at ``commit``.

    The same files give the same ``gcs://_ray_pkg_<hash>.zip`` (Ray's own hashing), so the lock
    pins the code exactly and `apply` uploads just that when the environment ships packages.
    """
    from ray._private.runtime_env.packaging import get_uri_for_directory

    with tempfile.TemporaryDirectory(prefix="graphops-package-") as tmp:
        stage_code(repo, graph, commit, Path(tmp))
        return get_uri_for_directory(tmp, include_gitignore=False)


def stage_code(repo: Path, graph: str, commit: str, target: Path) -> Path:
    """Write ``graphs/__init__.py`` and ``graphs/<graph>/`` as of ``commit`` into ``target``."""
    with git.Repo(repo) as r:
        tree = r.commit(commit).tree
        try:
            folder = tree / GRAPHS_DIR / graph
        except KeyError as exc:
            raise PromotionError(
                f"graphs/{graph} does not exist at commit {commit[:12]}.",
                fix="Commit the graph package first.",
                graph=graph,
            ) from exc
        blobs = [b for b in folder.traverse() if b.type == "blob"]
        init = tree / GRAPHS_DIR / "__init__.py" if "__init__.py" in (tree / GRAPHS_DIR) else None
        for blob in [*blobs, *([init] if init is not None else [])]:
            if "__pycache__" in blob.path:
                continue
            path = target / blob.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob.data_stream.read())
    return target


def lock_from_checkout(repo: Path, graph: str, registry: Registry) -> GraphLock:
    """The lock of ``graph`` as committed at HEAD, with the models its passed validation used."""
    commit = current_commit(repo)
    if commit is None:
        raise PromotionError(
            f"{repo} is not a git checkout with a commit: a lock names the commit of the code.",
            fix="Promote from a clone of the repository.",
            graph=graph,
        )
    if is_dirty(repo, [f"{GRAPHS_DIR}/{graph}"]):
        raise PromotionError(
            f"graphs/{graph} has uncommitted changes: a lock must name a commit that holds them.",
            fix="Commit (and validate) the change first.",
            graph=graph,
        )
    from graphops.runtime.online import request_example

    package = load_graph(repo, graph)
    record = _passed_record(registry, graph, package.graph.version, package.content_hash)
    models = {
        node: registry.resolve(uri).model_copy(update={"alias": None})
        for node, uri in sorted(record.models.items())
    }
    for node, pin in models.items():
        if record.digests.get(node) and record.digests[node] != pin.digest:
            models[node] = pin.model_copy(update={"digest": record.digests[node]})
    return GraphLock(
        version=package.graph.version,
        content_hash=package.content_hash,
        commit=commit,
        models=models,
        validation_run=record.run_id,
        package=package_uri(repo, graph, commit),
        example=request_example(package),
        platform_version=graphops.__version__,
    )


def _passed_record(
    registry: Registry, graph: str, version: str, content_hash: str
) -> ValidationRecord:
    for record in registry.validations(graph, version):
        if record.status == "passed" and record.content_hash == content_hash:
            return record
    raise PromotionError(
        f"Gate validation: no passed validation of {graph} {version} at content hash "
        f"{content_hash[:19]} in {registry.tracking_uri}.",
        fix=f"Run `graphops validate {graph}` on this commit (CI does on every pull request).",
        graph=graph,
    )


def check_gates(
    repo: Path,
    registry: Registry,
    env: EnvironmentConfig,
    graph: str,
    lock: GraphLock,
    now: datetime.datetime,
    live: Callable[[str, str, GraphLock], str | None] | None = None,
) -> list[Gate]:
    """Every gate of ``env``'s policy for ``lock``; nothing is written.

    Args:
        repo: Repository root.
        registry: The MLflow registry (validation records, model digests).
        env: The target environment.
        graph: Graph name.
        lock: The lock to promote.
        now: The time the soak is measured to.
        live: ``live(env, graph, lock)`` -> None when the lock runs healthy in ``env``, else why
            not; None skips the live check (no cluster address configured).
    """
    gates = []
    policy = env.policy
    if policy.require_validation:
        gates.append(_validation_gate(registry, lock))
    if policy.upstream:
        upstream = load_release(repo, policy.upstream).graphs.get(graph)
        if upstream is None or upstream.lock != lock:
            gates.append(
                Gate(
                    "upstream",
                    False,
                    f"{graph} {lock.version} ({lock.content_hash[:19]}) is not what "
                    f"{policy.upstream} runs; promote it there first.",
                )
            )
        else:
            soaked = now - upstream.promoted_at
            needed = datetime.timedelta(minutes=policy.soak_minutes)
            gates.append(
                Gate(
                    "soak",
                    soaked >= needed,
                    f"live in {policy.upstream} since {upstream.promoted_at.isoformat()} "
                    f"({_minutes(soaked)} of the {policy.soak_minutes:g} min required)",
                )
            )
            if live is not None:
                problem = live(policy.upstream, graph, lock)
                gates.append(
                    Gate(
                        "healthy upstream",
                        problem is None,
                        problem or f"running and healthy in {policy.upstream}",
                    )
                )
    gates.append(_digest_gate(registry, lock))
    return gates


def _minutes(delta: datetime.timedelta) -> str:
    return f"{delta.total_seconds() / 60:.1f} min"


def _validation_gate(registry: Registry, lock: GraphLock) -> Gate:
    if not lock.validation_run:
        return Gate("validation", False, "the lock names no validation run")
    try:
        record = registry.validation(lock.validation_run)
    except GraphOpsError as exc:
        return Gate("validation", False, str(exc))
    if record.status != "passed" or record.content_hash != lock.content_hash:
        return Gate(
            "validation",
            False,
            f"run {record.run_id} is {record.status} at {record.content_hash[:19]}, not a pass "
            f"of {lock.content_hash[:19]}",
        )
    digests = {node: pin.digest for node, pin in lock.models.items()}
    if record.digests and record.digests != digests:
        return Gate("validation", False, f"run {record.run_id} validated other model artifacts")
    return Gate("validation", True, f"passed in run {record.run_id}")


def _digest_gate(registry: Registry, lock: GraphLock) -> Gate:
    changed = []
    for node, pin in lock.models.items():
        try:
            now = registry.resolve(pin.uri)
        except GraphOpsError as exc:
            changed.append(f"{node}: {exc.what}")
            continue
        if now.digest != pin.digest:
            changed.append(f"{node}: {pin.uri} is {now.digest[:19]} now, {pin.digest[:19]} locked")
    if changed:
        return Gate("model digests", False, "; ".join(changed))
    return Gate("model digests", True, "every pinned model still matches the registry")


def branch_name(env: str, graph: str, version: str) -> str:
    """The branch a promotion is committed on."""
    return f"promote/{env}/{graph}-{version}"


def promote(
    repo: Path,
    graph: str,
    env_name: str,
    registry: Registry,
    *,
    version: str | None = None,
    now: datetime.datetime | None = None,
    push: str | None = None,
    live: Callable[[str, str, GraphLock], str | None] | None = None,
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
        live: See `check_gates`.
        dry_run: Check the gates and make the lock, but write and commit nothing.

    Raises:
        PromotionError: A gate refused (every gate is listed); nothing was written.
    """
    env = load_environment(repo, env_name)
    now = now or utcnow()
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
        lock = lock_from_checkout(repo, graph, registry)
    if version is not None and version != lock.version:
        raise PromotionError(
            f"Got --version {version}, but the lock to promote is {graph} {lock.version}.",
            fix="Promote the version that is validated (or live upstream), or drop --version.",
            graph=graph,
        )
    gates = check_gates(repo, registry, env, graph, lock, now, live)
    result = Promotion(graph=graph, env=env_name, lock=lock, gates=gates)
    refused = [g for g in gates if not g.passed]
    if refused:
        raise PromotionError(
            f"Promotion of {graph} {lock.version} to {env_name} refused by gate "
            + "; ".join(f"{g.name}: {g.detail}" for g in refused),
            fix="Nothing was written. Satisfy the gate(s) and promote again.",
            graph=graph,
        )
    current = load_release(repo, env_name).graphs.get(graph)
    if dry_run or (current is not None and current.lock == lock):
        return result  # a preview, or already pinned: nothing to do (idempotent)
    result.branch = branch_name(env_name, graph, lock.version)
    _commit(repo, result, now, push)
    return result


def _write(repo: Path, env_name: str, graph: str, lock: GraphLock, now: datetime.datetime) -> None:
    release = load_release(repo, env_name)
    previous = release.graphs.get(graph)
    overrides = previous.deployments if previous is not None else {}
    entry = ReleaseEntry(lock=lock, promoted_at=now, deployments=overrides)
    graphs = dict(release.graphs) | {graph: entry}
    write_release(repo, env_name, release.model_copy(update={"graphs": graphs}))
    render(repo, env_name).write()


def _message(result: Promotion) -> str:
    lock = dump_yaml(result.lock.model_dump(mode="json", exclude={"example"}))
    return f"promote {result.graph} {result.lock.version} to {result.env}\n\n{lock}"


def _commit(repo: Path, result: Promotion, now: datetime.datetime, push: str | None) -> None:
    """Commit on the promotion branch (from HEAD, or from origin's ``push`` branch), optionally push.

    Work happens on a detached HEAD, so the promotion branch can be re-pointed on a retry; the
    checkout goes back to where it was, keeping any uncommitted work outside environments/.
    """
    with git.Repo(repo) as r:
        original = r.active_branch.name if not r.head.is_detached else r.head.commit.hexsha
        if is_dirty(repo, [ENVIRONMENTS_DIR]):
            raise PromotionError(
                "environments/ has uncommitted changes.",
                fix="Commit or discard them; a promotion commits environments/ itself.",
                graph=result.graph,
            )
        try:
            for attempt in range(1, PUSH_ATTEMPTS + 1):
                if push:
                    r.remotes.origin.fetch()
                    start = r.remotes.origin.refs[push].commit
                else:
                    start = r.head.commit
                try:
                    r.git.checkout(start.hexsha)
                except git.GitCommandError as exc:
                    raise PromotionError(
                        f"Cannot check out {start.hexsha[:12]}: {exc.stderr.strip()}",
                        fix="Commit or stash your uncommitted changes, then promote again.",
                        graph=result.graph,
                    ) from exc
                _write(repo, result.env, result.graph, result.lock, now)
                r.git.add(ENVIRONMENTS_DIR)
                commit = r.index.commit(_message(result))
                r.create_head(result.branch, commit, force=True)
                result.commit = commit.hexsha
                result.files = sorted(
                    r.git.diff("--name-only", f"{start.hexsha}..{commit.hexsha}").split()
                )
                if not push:
                    return
                try:
                    r.git.push("origin", f"{commit.hexsha}:refs/heads/{push}")
                except git.GitCommandError as exc:
                    if attempt == PUSH_ATTEMPTS or (
                        "rejected" not in str(exc) and "fetch first" not in str(exc)
                    ):
                        raise PromotionError(
                            f"Pushing the promotion to origin/{push} failed: {exc.stderr.strip()}",
                            fix="Pull, then promote again.",
                            graph=result.graph,
                        ) from exc
                    continue  # someone else promoted meanwhile: rebase on theirs, re-render, retry
                result.pushed = push
                return
        finally:
            r.git.checkout(original)
