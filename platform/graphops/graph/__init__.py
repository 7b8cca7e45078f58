"""The graph model: nodes, settings, graphs, discovery and hashing. Imports neither Ray nor MLflow."""

from graphops.graph._columns import dense_columns
from graphops.graph._discovery import (
    GRAPHS_DIR,
    Catalog,
    GraphPackage,
    LoadFailure,
    discover,
    find_repo,
    graph_names,
    load_graph,
    load_locked,
)
from graphops.graph._features import Feature, FeatureLookup, FeatureTable, lookup
from graphops.graph._graph import Graph
from graphops.graph._hash import content_hash, manifest_hash, manifest_of, read_package
from graphops.graph._metrics import BUILTIN_METRICS, MetricResult, evaluate
from graphops.graph._node import MODEL_PARAMETER, Batch, ModelNode, ModelURI, Node, model, node
from graphops.graph._settings import (
    Batching,
    ConversionTolerance,
    GiB,
    Metric,
    MiB,
    Resources,
    Scaling,
    Validation,
)
from graphops.graph._verified import LockedCode, check_code

__all__ = [
    "BUILTIN_METRICS",
    "GRAPHS_DIR",
    "MODEL_PARAMETER",
    "Batch",
    "Batching",
    "Catalog",
    "ConversionTolerance",
    "Feature",
    "FeatureLookup",
    "FeatureTable",
    "GiB",
    "Graph",
    "GraphPackage",
    "LoadFailure",
    "LockedCode",
    "Metric",
    "MetricResult",
    "MiB",
    "ModelNode",
    "ModelURI",
    "Node",
    "Resources",
    "Scaling",
    "Validation",
    "check_code",
    "content_hash",
    "dense_columns",
    "discover",
    "evaluate",
    "find_repo",
    "graph_names",
    "load_graph",
    "load_locked",
    "lookup",
    "manifest_hash",
    "manifest_of",
    "model",
    "node",
    "read_package",
]
