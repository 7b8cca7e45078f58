"""Offline validation of graphs: which graphs changed, running them on Ray Data, gates, records."""

from graphops.validation.changes import (
    ChangeSet,
    changed_graphs,
    current_commit,
    is_dirty,
    validated_commit,
)
from graphops.validation.report import markdown, to_json, write_markdown
from graphops.validation.results import GraphValidation, MetricGate, ValidationReport
from graphops.validation.validate import validate_graph, validate_graphs

__all__ = [
    "ChangeSet",
    "GraphValidation",
    "MetricGate",
    "ValidationReport",
    "changed_graphs",
    "current_commit",
    "is_dirty",
    "markdown",
    "to_json",
    "validate_graph",
    "validate_graphs",
    "validated_commit",
    "write_markdown",
]
