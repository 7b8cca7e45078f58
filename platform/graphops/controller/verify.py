"""Verify on apply: a cluster gets only locks a passed validation covers, and runs what git says.

`apply` (and so every controller round) calls `verify_release` before it changes anything: each
lock of ``environments/<env>/release.yaml`` must be backed by the validation run it names, a
**passed** record of exactly that graph, version, content hash, model versions and model digests
(written by the trusted job where ``policy.require_trusted_record``), of a commit on the branch
being applied, and the lock's own commit must be on that branch and hold code that hashes to the
lock's content hash and package. A lock edited by hand fails one of these and is refused, naming
the environment, the graph, the field, what the record (or git) says and what the lock says.

`running` asks each running graphops application what code it runs (``GET <route>/health``:
the content hash its replica computed) and compares it with its lock: a difference is tampering,
never "nothing to do" (`check_running` for apply; `graphops status` shows it).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from graphops._git import in_history
from graphops.controller.lock import record_mismatches
from graphops.controller.render import Rendered, versions
from graphops.environments import GraphLock, release_path
from graphops.errors import LockVerificationError, RegistryError, TamperingError
from graphops.registry import Registry, ValidationRecord
from graphops.runtime.schema import APP_IMPORT_PATH

if TYPE_CHECKING:
    from graphops.controller.cluster import Cluster


def _fix(graph: str, env: str) -> str:
    return (
        f"Run `graphops promote {graph} --to {env}`: it writes the lock from a passed "
        "validation record (never edit release.yaml by hand), then apply again."
    )


def verify_release(
    repo: Path, rendered: Rendered, registry: Registry, log: Callable[[str], None] = lambda _: None
) -> int:
    """Refuse the release unless every lock in it is one a trusted, passed validation covers.

    Args:
        repo: The checkout being applied; its HEAD is the environment's branch.
        rendered: The environment as `render` gives it (policy and release).
        registry: The MLflow store holding the validation records.
        log: Progress lines.

    Returns:
        How many distinct locks were verified.

    Raises:
        LockVerificationError: A lock does not match its record, its record is missing, failed,
            untrusted or of a commit off the branch, or the lock's commit is not on the branch
            or holds other code; the registry could not be read (never accepted unread).
    """
    env = rendered.env
    seen: set[str] = set()
    for graph, entry in sorted(rendered.release.graphs.items()):
        for version in versions(graph, entry):
            key = version.lock.model_dump_json()
            if key in seen:
                continue
            seen.add(key)
            _verify_code(repo, env, graph, version.lock)
            if rendered.environment.policy.require_validation:
                record = _record(registry, env, graph, version.lock, repo)
                _verify_record(repo, rendered, graph, version.lock, record)
    log(f"verified {len(seen)} lock(s) of {env} against git and {registry.tracking_uri}")
    return len(seen)


def _refuse(
    repo: Path, env: str, graph: str, field: str, got: str, rule: str, fix: str | None = None
) -> LockVerificationError:
    """The refusal of one lock field, in the house format, before anything changed."""
    return LockVerificationError(
        f'{env}: Got "{got}" for graphs.{graph}.lock.{field}. {rule}. Nothing was changed on '
        "the cluster",
        fix=fix or _fix(graph, env),
        graph=graph,
        file=release_path(repo, env).relative_to(repo),
    )


def _verify_code(repo: Path, env: str, graph: str, lock: GraphLock) -> None:
    """The lock's commit is on the branch and its graph files hash to the lock."""
    from graphops.controller.packaging import package_uri, stage_code
    from graphops.graph import GRAPHS_DIR, content_hash

    if not in_history(repo, lock.commit):
        raise _refuse(
            repo,
            env,
            graph,
            "commit",
            lock.commit,
            "A lock's commit must be HEAD or one of its ancestors (the branch being applied); "
            "this one is not in the history here",
        )
    with tempfile.TemporaryDirectory(prefix="graphops-verify-") as tmp:
        staged = stage_code(repo, graph, lock.commit, Path(tmp)) / GRAPHS_DIR / graph
        at_commit = content_hash(staged)
    if at_commit != lock.content_hash:
        raise _refuse(
            repo,
            env,
            graph,
            "content_hash",
            lock.content_hash,
            f"graphs/{graph} at the lock's commit {lock.commit[:12]} hashes to {at_commit}",
        )
    package = package_uri(repo, graph, lock.commit)
    if package != lock.package:
        raise _refuse(
            repo,
            env,
            graph,
            "package",
            lock.package,
            f"graphs/{graph} at the lock's commit {lock.commit[:12]} packages as {package}",
        )


def _record(
    registry: Registry, env: str, graph: str, lock: GraphLock, repo: Path
) -> ValidationRecord:
    """The validation record the lock names; refused when missing or the store is unreadable."""
    if not lock.validation_run:
        raise _refuse(
            repo,
            env,
            graph,
            "validation_run",
            "None",
            f"Environment {env} requires a passed validation record of each lock "
            "(policy.require_validation) and this lock names none",
        )
    try:
        return registry.validation(lock.validation_run)
    except RegistryError as exc:
        if exc.what.startswith("Could not read"):  # unreachable store: never accept unread
            raise LockVerificationError(
                f"{env}: cannot verify the lock of {graph} {lock.version}: {exc.what} Apply "
                "accepts a lock only after reading its validation record; nothing was changed "
                "on the cluster",
                fix="Check that the tracking store is reachable (--tracking-uri or "
                "MLFLOW_TRACKING_URI names the store CI records validations in), then apply "
                "again.",
                graph=graph,
            ) from exc
        raise _refuse(
            repo,
            env,
            graph,
            "validation_run",
            lock.validation_run,
            f"No such validation run in {registry.tracking_uri}; a lock names the run that "
            "validated it",
        ) from exc


def _verify_record(
    repo: Path, rendered: Rendered, graph: str, lock: GraphLock, record: ValidationRecord
) -> None:
    """The record is a trusted pass of exactly this lock, of a commit on the branch."""
    env, policy = rendered.env, rendered.environment.policy
    differ = record_mismatches(record, lock, graph)
    if differ:
        field, locked, validated = differ[0]
        others = "; ".join(f"{f}: lock {lk}, run {v}" for f, lk, v in differ[1:])
        also = f" (also {others})" if others else ""
        raise _refuse(
            repo,
            env,
            graph,
            field,
            locked,
            f"The lock's validation run {record.run_id} validated {validated}{also}: apply "
            "deploys only what a passed validation validated, field for field",
        )
    if record.commit is None or not in_history(repo, record.commit):
        raise _refuse(
            repo,
            env,
            graph,
            "validation_run",
            record.run_id,
            f"That run validated commit {(record.commit or 'None')[:12]}, which is not on the "
            "branch being applied (a pull request's own commit?); only records of commits on "
            "the branch count",
        )
    if policy.require_trusted_record and not record.trusted:
        raise _refuse(
            repo,
            env,
            graph,
            "validation_run",
            record.run_id,
            f"Environment {env} requires records written by the trusted job "
            "(policy.require_trusted_record) and this run was not",
            fix=f"Let the trusted job validate the merged commit, then run `graphops promote "
            f"{graph} --to {env}` and apply again.",
        )


@dataclass(frozen=True)
class Running:
    """What one running application reports against its lock."""

    app: str
    expected: str
    reported: str | None
    problem: str = ""

    @property
    def tampered(self) -> bool:
        """It answered with other code than its lock."""
        return self.reported is not None and self.reported != self.expected


def running(
    base_url: str,
    applications: Mapping[str, Mapping[str, Any]],
    locks: Mapping[str, GraphLock],
    timeout_s: float = 10.0,
) -> list[Running]:
    """Ask each RUNNING graphops application with a route what code it runs (one GET each).

    Args:
        base_url: The cluster's Serve HTTP address.
        applications: Serve's application details by name (``status``, ``deployed_app_config``).
        locks: The lock of each application git asks for, by application name.
        timeout_s: Per request.

    Returns:
        One entry per application checked (applications without a route are not asked).
    """
    out = []
    for name, lock in sorted(locks.items()):
        details = applications.get(name) or {}
        config = details.get("deployed_app_config") or {}
        route = config.get("route_prefix")
        if (
            details.get("status") != "RUNNING"
            or not route
            or config.get("import_path") != APP_IMPORT_PATH
        ):
            continue
        url = f"{base_url}{route.rstrip('/')}/health"
        try:
            answer = requests.get(url, timeout=timeout_s)
            reported = answer.json().get("content_hash") if answer.status_code == 200 else None
            problem = "" if reported else f"GET {url} answered {answer.status_code}"
        except (requests.RequestException, ValueError, AttributeError) as exc:
            reported, problem = None, f"GET {url} failed: {exc}"
        out.append(Running(name, lock.content_hash, reported, problem))
    return out


def check_running(env: str, found: list[Running]) -> None:
    """Refuse to go on when an application runs other code than its lock (tampering).

    Raises:
        TamperingError: Naming each application, the content hash its lock expects and the one
            it reported (or that it did not report one).
    """
    tampered = [r for r in found if r.tampered]
    if tampered:
        lines = "; ".join(
            f'Got "{r.reported}" for the content hash {r.app} reports, expected {r.expected} '
            "(its lock)"
            for r in tampered
        )
        raise TamperingError(
            f"{env}: tampering: a running application does not run the code its lock pins. "
            f"{lines}. Nothing was changed on the cluster",
            fix="Find how other code got there (the code archive or package the application "
            "loads, the image), remove that application from the cluster (`serve shutdown`, "
            f"or a fresh cluster), then run `graphops apply --env {env}` to start the locked "
            "code.",
        )
    silent = [r for r in found if r.problem]
    if silent:
        lines = "; ".join(f"{r.app} (expected {r.expected}): {r.problem}" for r in silent)
        raise TamperingError(
            f"{env}: cannot verify what runs: a running application did not report the "
            f"content hash of its code. {lines}. Nothing was changed on the cluster",
            fix="Check the application (`graphops status`, its /health route and the Serve "
            f"logs), then run `graphops apply --env {env}` again.",
        )


def before_apply(
    repo: Path,
    rendered: Rendered,
    cluster: Cluster,
    tracking_uri: str | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> None:
    """Every check `apply` makes before it changes anything, cheapest first.

    Signed commits (`graphops.controller.signatures`, where the policy asks), each lock against
    its validation record in MLflow at ``tracking_uri`` (default: ``$MLFLOW_TRACKING_URI``,
    else the repository's store), then what each running application reports.

    Raises:
        UnsignedCommitError, LockVerificationError, TamperingError: See those checks.
        ClusterAccessError: The cluster could not be read.
    """
    from graphops.controller.cluster import serve_url
    from graphops.controller.signatures import check_signatures

    signed = check_signatures(repo, rendered.env)
    if signed:
        log(f"verified the signatures of {signed} commit(s) of {rendered.env}")
    verify_release(repo, rendered, Registry.for_repo(repo, tracking_uri), log)
    locks = {v.app: v.lock for g, e in rendered.release.graphs.items() for v in versions(g, e)}
    check_running(
        rendered.env, running(serve_url(rendered.environment), cluster.applications(), locks)
    )
