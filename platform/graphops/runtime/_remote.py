"""What a Ray worker (a Ray Data actor or a Serve replica) does to rebuild its part of a graph."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from graphops.errors import RunError
from graphops.features import FeaturesConfig, open_store, uses_features
from graphops.graph import GraphPackage, ModelNode, load_graph
from graphops.plan import Stage
from graphops.registry import Registry, ResolvedModel, load_pinned
from graphops.runtime.runner import LocalRunner

if TYPE_CHECKING:  # torch is imported only by the workers that load a model
    from graphops.models import TorchModel


class PinnedLoader:
    """Loads pinned models from their artifact URIs without an MLflow tracking client.

    What offline workers use (`graphops.registry.load_pinned`): the driver checked each pin
    against the registry once (`Registry.check_pins`), each worker checks the artifacts it
    downloads against the pin.
    """

    def __init__(self, tracking_uri: str | None) -> None:
        self.tracking_uri = tracking_uri

    def load(self, node: ModelNode, pinned: ResolvedModel) -> TorchModel:
        """The model of ``node`` at ``pinned``, its artifacts' digest checked."""
        return load_pinned(node, pinned, self.tracking_uri)


def open_graph(repo: str, graph: str, content_hash: str | None) -> GraphPackage:
    """Load ``graph`` on a worker and check it is the code the driver planned.

    ``repo`` is the driver's checkout; a worker on another machine has the repository as its
    ``working_dir`` (the current directory) instead.
    """
    root = Path(repo) if Path(repo).is_dir() else Path.cwd()
    package = load_graph(root, graph)
    if content_hash is not None and package.content_hash != content_hash:
        raise RunError(
            f"The graph's files on the worker hash to {package.content_hash[:19]}, not to the "
            f"pinned {content_hash[:19]}: the code changed since it was planned or locked.",
            fix="Deploy the commit that was locked (or re-run on an unchanged checkout).",
            graph=graph,
        )
    return package


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
