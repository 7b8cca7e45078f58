"""Lock building: the lock of a graph as committed in the checkout, and when a lock is unchanged.

The first environment (no upstream) takes its lock from the checkout: the graph's committed
files at HEAD, its code package URI, and the models of its passed validation record (with the
digests that validation saw). `same_lock` keeps the live lock when only the commit or the
validation run differ, so an unrelated commit never rolls a graph out again.
"""

from __future__ import annotations

from pathlib import Path

import graphops
from graphops._git import current_commit, is_dirty
from graphops.controller.packaging import package_uri
from graphops.environments import GraphLock, ReleaseEntry
from graphops.errors import PromotionError
from graphops.graph import GRAPHS_DIR, load_graph
from graphops.registry import Registry, ValidationRecord


def lock_from_checkout(repo: Path, graph: str, registry: Registry) -> GraphLock:
    """The lock of ``graph`` as committed at HEAD, with the models its passed validation used.

    Raises:
        PromotionError: ``repo`` has no commit, the graph has uncommitted changes, or no passed
            validation of its version at its content hash exists.
    """
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
    from graphops.runtime.checkout import request_example

    package = load_graph(repo, graph)
    record = passed_record(registry, graph, package.graph.version, package.content_hash)
    models = {
        node: registry.resolve(uri, where={"node": node, "graph": graph}).model_copy(
            update={"alias": None}
        )
        for node, uri in sorted(record.models.items())
    }
    for node, pin in models.items():
        if record.digests.get(node) and record.digests[node] != pin.digest:
            models[node] = pin.model_copy(update={"digest": record.digests[node]})
    return GraphLock(
        version=package.graph.version,
        content_hash=package.content_hash,
        manifest=package.manifest,
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


def passed_record(
    registry: Registry, graph: str, version: str, content_hash: str
) -> ValidationRecord:
    """The latest passed validation of ``graph`` ``version`` at ``content_hash``.

    Raises:
        PromotionError: There is none (the validation gate, before a lock exists).
    """
    for record in registry.validations(graph, version):
        if record.status == "passed" and record.content_hash == content_hash:
            return record
    raise PromotionError(
        f"Gate validation: no passed validation of {graph} {version} at content hash "
        f"{content_hash[:19]} in {registry.tracking_uri}.",
        fix=f"Run `graphops validate {graph}` on this commit (CI does on every pull request).",
        graph=graph,
    )


def record_mismatches(
    record: ValidationRecord, lock: GraphLock, graph: str | None = None
) -> list[tuple[str, str, str]]:
    """(lock field, what the lock says, what ``record`` validated) for each difference.

    A lock matches its record when the record is a pass of the same graph (when ``graph`` is
    given), version, content hash, model versions and model digests: exactly, field by field.
    """
    found: list[tuple[str, str, str]] = []
    if graph is not None and record.graph != graph:
        found.append(("graph", graph, record.graph))
    if record.status != "passed":
        found.append(("validation_run", "a passed run", f"a {record.status or 'unfinished'} run"))
    if record.version != lock.version:
        found.append(("version", lock.version, record.version))
    if record.content_hash != lock.content_hash:
        found.append(("content_hash", lock.content_hash, record.content_hash))
    for node in sorted(set(lock.models) | set(record.models) | set(record.digests)):
        pin = lock.models.get(node)
        uri, digest = (pin.uri, pin.digest) if pin else ("(none)", "(none)")
        if record.models.get(node, "(none)") != uri:
            found.append((f"models.{node}", uri, record.models.get(node, "(none)")))
        if record.digests.get(node, "(none)") != digest:
            found.append((f"models.{node}.digest", digest, record.digests.get(node, "(none)")))
    return found
