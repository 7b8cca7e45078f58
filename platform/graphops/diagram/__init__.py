"""Drawings of a plan: Mermaid flowchart, self-contained SVG, resource summaries.

Sits directly above `graphops.planner`; imports neither Ray nor MLflow.
"""

from graphops.diagram._mermaid import describe_resources, mermaid
from graphops.diagram._svg import svg

__all__ = ["describe_resources", "mermaid", "svg"]
