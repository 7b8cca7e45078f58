"""What a Ray worker (a Ray Data actor or a Serve replica) does to rebuild its part of a graph."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from graphops.errors import RunError
from graphops.features import FeaturesConfig, open_store, uses_features
from graphops.graph import GraphPackage, LockedCode, ModelNode, load_graph, load_locked
from graphops.planner import Stage
from graphops.registry import Registry, ResolvedModel, load_pinned
from graphops.runtime.code import open_archive
from graphops.runtime.runner import LocalRunner

if TYPE_CHECKING:
    from graphops.models import Model
    from graphops.runtime.schema import GraphSpec


class PinnedLoader:
    """Loads pinned models from their artifact URIs without an MLflow tracking client.

    What offline workers use (`graphops.registry.load_pinned`): the driver checked each pin
    against the registry once (`Registry.check_pins`), each worker checks the artifacts it
    downloads against the pin.
    """

    def __init__(self, tracking_uri: str | None, pickle_allowed: Iterable[str] = ()) -> None:
        self.tracking_uri = tracking_uri
        self.pickle_allowed = frozenset(pickle_allowed)

    def load(self, node: ModelNode, pinned: ResolvedModel) -> Model:
        """The model of ``node`` at ``pinned``, its artifacts' digest checked."""
        allowed = pinned.name in self.pickle_allowed
        return load_pinned(node, pinned, self.tracking_uri, pickle_allowed=allowed)


def open_graph(spec: GraphSpec) -> GraphPackage:
    """Load ``spec``'s graph on a worker, its files checked against the lock before any import.

    The code comes from ``spec.code_uri`` (a zip the worker downloads itself) or from the folder
    ``spec.repo``: the driver's checkout, an image's code root, or, for a package shipped as
    Ray's ``working_dir``, the current directory. With a content hash (every lock has one) the
    files are read into memory, compared with it by platform code and imported from those
    bytes (`graphops.graph.load_locked`); without one (an author's own run) they are imported
    as they are.

    Raises:
        TamperedCodeError: The files differ from the lock; nothing of them ran.
    """
    if spec.content_hash is None:
        root = Path(spec.repo) if Path(spec.repo).is_dir() else Path.cwd()
        return load_graph(root, spec.graph)
    locked = LockedCode(spec.graph, spec.content_hash, spec.manifest)
    if spec.code_uri is not None:
        return open_archive(spec.code_uri, locked, whole_repository=spec.code_repository)
    root = Path(spec.repo) if Path(spec.repo).is_dir() else Path.cwd()
    return load_locked(root.resolve(), locked)


def stage_runner(
    package: GraphPackage,
    stage: Stage,
    registry: Registry | PinnedLoader | None,
    pins: Mapping[str, ResolvedModel],
    features: FeaturesConfig | None = None,
) -> LocalRunner:
    """A runner for one stage, its models loaded at their pinned versions (digest checked).

    A stage with lookup nodes opens the store ``features`` names (default: embedded).
    """
    store = open_store(features, package.path) if uses_features(stage.nodes) else None
    if not stage.model_nodes:
        return LocalRunner(package.graph, {}, nodes=stage.nodes, features=store)
    missing = [n.name for n in stage.model_nodes if n.name not in pins]
    if missing or registry is None:
        raise RunError(
            f"No pinned model version or registry for model node(s) {', '.join(missing)}.",
            fix="Pass every model node's ResolvedModel (Registry.resolve or the release lock).",
            graph=package.name,
        )
    models = {n.name: registry.load(n, pins[n.name]) for n in stage.model_nodes}
    return LocalRunner(package.graph, models, nodes=stage.nodes, features=store)
