"""A graph of this checkout made ready for a runtime: its models pinned, its spec, its example.

The I/O that `graphops.runtime.schema` (plain data) leaves out: the registry resolves each model
alias once (`resolve_pins`), `spec_of` fills a `GraphSpec` (or a subclass) from a package and a
registry, and `request_example` reads one request from the graph's validation dataset. The
controller (locks), the online and offline runtimes and the benchmarks call these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from graphops.graph import GraphPackage
from graphops.registry import Registry, ResolvedModel
from graphops.runtime._table import read_rows
from graphops.runtime.schema import GraphSpec

Spec = TypeVar("Spec", bound=GraphSpec)


def resolve_pins(
    package: GraphPackage, registry: Registry, pins: Mapping[str, ResolvedModel] | None = None
) -> dict[str, ResolvedModel]:
    """The exact model version per model node: ``pins`` (from a lock) or the aliases resolved now.

    Resolving once, before any worker starts, means every replica loads the same version whatever
    happens to the alias later.
    """
    if pins:
        return dict(pins)
    return {n.name: registry.resolve(n.uri) for n in package.graph.model_nodes}


def spec_of(
    cls: type[Spec],
    package: GraphPackage,
    registry: Registry,
    models: Mapping[str, ResolvedModel],
    **fields: Any,
) -> Spec:
    """The ``cls`` spec of ``package`` in this checkout; workers load ``models`` from ``registry``.

    ``models`` come from `resolve_pins`; ``fields`` are the subclass's own (and ``fuse``).
    """
    return cls(
        graph=package.name,
        repo=str(package.repo),
        content_hash=package.content_hash,
        manifest=dict(package.manifest),
        models=dict(models),
        tracking_uri=registry.tracking_uri,
        pickle_allowed=tuple(sorted({m.name for m in models.values()} & registry.pickle_allowed)),
        work_dir=str(registry.work_dir),
        **fields,
    )


def request_example(package: GraphPackage) -> dict[str, Any] | None:
    """One request object for docs and smoke tests: the first validation row's request fields."""
    dataset = package.validation_dataset
    if dataset is None or not dataset.is_file():
        return None
    rows = read_rows(dataset)
    if not rows:
        return None
    return {f: _compact(rows[0][f]) for f in package.graph.request_fields if f in rows[0]}


def _compact(value: Any) -> Any:
    """Whole floats as ints (``2`` not ``2.0``): shorter examples, same meaning to the schema."""
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return int(value) if isinstance(value, float) and value.is_integer() else value


__all__ = ["request_example", "resolve_pins", "spec_of"]
