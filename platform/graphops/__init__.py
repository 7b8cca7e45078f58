"""graphops: GitOps for ML inference graphs on Ray.

Author a graph from plain typed functions over column batches, plan it into stages, run it
locally, offline (Ray Data) or online (Ray Serve), and promote it through environments in git.

Example:
    >>> from graphops import Graph, node, model, lookup, Resources
"""

import importlib
import sys
import types
from typing import TYPE_CHECKING

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
    TamperedCodeError,
    UnknownColumnError,
)

if TYPE_CHECKING:  # the real imports, for type checkers; at run time they load on first use
    from graphops.graph import (
        Batch,
        Batching,
        ConversionTolerance,
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
    from graphops.models import Model, TorchModel
    from graphops.planner import Plan, Stage, plan

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "Batching",
    "ChangeDetectionError",
    "ColumnTypeError",
    "ConversionTolerance",
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
    "Model",
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
    "TamperedCodeError",
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


_LAZY = {
    "Batch": "graphops.graph",
    "Batching": "graphops.graph",
    "ConversionTolerance": "graphops.graph",
    "Feature": "graphops.graph",
    "FeatureLookup": "graphops.graph",
    "FeatureTable": "graphops.graph",
    "GiB": "graphops.graph",
    "Graph": "graphops.graph",
    "GraphPackage": "graphops.graph",
    "Metric": "graphops.graph",
    "MiB": "graphops.graph",
    "ModelNode": "graphops.graph",
    "ModelURI": "graphops.graph",
    "Node": "graphops.graph",
    "Resources": "graphops.graph",
    "Scaling": "graphops.graph",
    "Validation": "graphops.graph",
    "dense_columns": "graphops.graph",
    "discover": "graphops.graph",
    "load_graph": "graphops.graph",
    "lookup": "graphops.graph",
    "model": "graphops.graph",
    "node": "graphops.graph",
    "Plan": "graphops.planner",
    "Stage": "graphops.planner",
    "plan": "graphops.planner",
    "Model": "graphops.models",
    "TorchModel": "graphops.models",
}
"""Public name -> the module it comes from, imported on first use (the CLI starts faster)."""


class _Package(types.ModuleType):
    """The ``graphops`` module: public names load on first use (the CLI starts faster)."""

    def __getattr__(self, name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'graphops' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        super().__setattr__(name, value)
        return value


sys.modules[__name__].__class__ = _Package
