"""graphops: GitOps for ML inference graphs on Ray.

Author a graph from plain typed functions over column batches, plan it into stages, run it
locally, offline (Ray Data) or online (Ray Serve), and promote it through environments in git.

Example:
    >>> from graphops import Graph, node, model, lookup, Resources
"""

from graphops.errors import (
    ChangeDetectionError,
    ColumnTypeError,
    CycleError,
    DuplicateColumnError,
    FeatureStoreError,
    GraphDefinitionError,
    GraphLoadError,
    GraphOpsError,
    GraphStructureError,
    InputDataError,
    InvalidModelURIError,
    InvalidVersionError,
    MissingColumnError,
    MissingTypeHintError,
    PlanError,
    RegistryError,
    RunError,
    ScaffoldError,
    ServeError,
    UnknownColumnError,
)
from graphops.graph import (
    Batch,
    Batching,
    Feature,
    FeatureLookup,
    FeatureTable,
    GiB,
    Graph,
    GraphPackage,
    Metric,
    MiB,
    ModelNode,
    ModelURI,
    Node,
    Resources,
    Scaling,
    Validation,
    dense_columns,
    discover,
    load_graph,
    lookup,
    model,
    node,
)
from graphops.plan import Plan, Stage, plan

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "Batching",
    "ChangeDetectionError",
    "ColumnTypeError",
    "CycleError",
    "DuplicateColumnError",
    "Feature",
    "FeatureLookup",
    "FeatureStoreError",
    "FeatureTable",
    "GiB",
    "Graph",
    "GraphDefinitionError",
    "GraphLoadError",
    "GraphOpsError",
    "GraphPackage",
    "GraphStructureError",
    "InputDataError",
    "InvalidModelURIError",
    "InvalidVersionError",
    "Metric",
    "MiB",
    "MissingColumnError",
    "MissingTypeHintError",
    "ModelNode",
    "ModelURI",
    "Node",
    "Plan",
    "PlanError",
    "RegistryError",
    "Resources",
    "RunError",
    "ScaffoldError",
    "Scaling",
    "ServeError",
    "Stage",
    "TorchModel",
    "UnknownColumnError",
    "Validation",
    "__version__",
    "dense_columns",
    "discover",
    "load_graph",
    "lookup",
    "model",
    "node",
    "plan",
]


def __getattr__(name: str) -> object:
    # TorchModel needs torch; import it only when a graph asks for it.
    if name == "TorchModel":
        from graphops.models import TorchModel

        return TorchModel
    raise AttributeError(f"module 'graphops' has no attribute {name!r}")
