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
    Traffic,
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
    traffic: Traffic | None = None
    notes: list[str] = field(default_factory=list)

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
    from graphops.runtime.schema import request_example

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
        request_fields=tuple(package.graph.request_fields),
    )


def same_lock(current: ReleaseEntry | None, lock: GraphLock) -> GraphLock:
    """The live lock when ``lock`` differs from it only by commit and validation run, else ``lock``.

    A later commit that leaves the graph's code and models as they were (another graph's change,
    a promotion commit, a re-validation) must not roll the graph out again.
    """
    if current is None:
        return lock
    unpinned = {"commit", "validation_run"}
    same = current.lock.model_dump(exclude=unpinned) == lock.model_dump(exclude=unpinned)
    return current.lock if same else lock


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
            registry, env, graph, upstream, current, now
        )
    if result.traffic is None and current is not None and current.lock == lock:
        result.traffic = current.traffic  # re-promoting the control keeps its experiment
    unchanged = (
        current is not None
        and current.lock == lock
        and same_traffic(current.traffic, result.traffic)
    )
    if dry_run or unchanged:
        return result  # a preview, or already pinned: nothing to do (idempotent)
    result.branch = branch_name(env_name, graph, lock.version)
    _commit(repo, result, now, push)
    return result


def _write(repo: Path, result: Promotion, now: datetime.datetime) -> None:
    release = load_release(repo, result.env)
    previous = release.graphs.get(result.graph)
    overrides = previous.deployments if previous is not None else {}
    entry = ReleaseEntry(
        lock=result.lock, promoted_at=now, deployments=overrides, traffic=result.traffic
    )
    graphs = dict(release.graphs) | {result.graph: entry}
    write_release(repo, result.env, release.model_copy(update={"graphs": graphs}))
    render(repo, result.env).write()


def carry_experiment(
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
    needed = datetime.timedelta(minutes=env.policy.soak_minutes)
    pinned = [(f"arm {v}", a.lock, a.promoted_at) for v, a in sorted(traffic.arms.items())]
    if traffic.shadow is not None:
        s = traffic.shadow
        pinned.append((f"shadow {s.lock.version}", s.lock, s.promoted_at))
    problems = []
    for name, lock, since in pinned:
        if now - since < needed:
            problems.append(
                f"{name} has run in {env.policy.upstream} for {_minutes(now - since)} of the "
                f"{env.policy.soak_minutes:g} min required"
            )
        gates = [_digest_gate(registry, lock)]
        if env.policy.require_validation:
            gates.append(_validation_gate(registry, lock))
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


@dataclass(frozen=True)
class Committed:
    """Where a change to an environment went."""

    commit: str
    files: list[str]
    pushed: str | None


def commit_change(
    repo: Path,
    *,
    graph: str,
    branch: str,
    message: str,
    write: Callable[[], None],
    push: str | None,
) -> Committed:
    """Commit what ``write`` does to environments/ on ``branch`` (from HEAD or origin's ``push``).

    Work happens on a detached HEAD, so the branch can be re-pointed on a retry: when the push
    is refused because someone else changed ``push`` meanwhile, ``write`` runs again on their
    commit (it re-reads release.yaml and re-renders), and the push is retried. The checkout goes
    back to where it was, keeping any uncommitted work outside environments/.
    """
    with git.Repo(repo) as r:
        original = r.active_branch.name if not r.head.is_detached else r.head.commit.hexsha
        if is_dirty(repo, [ENVIRONMENTS_DIR]):
            raise PromotionError(
                "environments/ has uncommitted changes.",
                fix="Commit or discard them; graphops commits environments/ itself.",
                graph=graph,
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
                        fix="Commit or stash your uncommitted changes, then try again.",
                        graph=graph,
                    ) from exc
                write()
                r.git.add(ENVIRONMENTS_DIR)
                commit = r.index.commit(message)
                r.create_head(branch, commit, force=True)
                files = sorted(
                    r.git.diff("--name-only", f"{start.hexsha}..{commit.hexsha}").split()
                )
                if not push:
                    return Committed(commit.hexsha, files, None)
                try:
                    r.git.push("origin", f"{commit.hexsha}:refs/heads/{push}")
                except git.GitCommandError as exc:
                    if attempt == PUSH_ATTEMPTS or (
                        "rejected" not in str(exc) and "fetch first" not in str(exc)
                    ):
                        raise PromotionError(
                            f"Pushing to origin/{push} failed: {exc.stderr.strip()}",
                            fix="Pull, then try again.",
                            graph=graph,
                        ) from exc
                    continue  # someone else pushed meanwhile: redo the change on theirs, retry
                return Committed(commit.hexsha, files, push)
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            r.git.checkout(original)
