"""The plan: a graph cut into stages (fused nodes), and its diagrams. Imports neither Ray nor MLflow."""

from graphops.plan._diagram import describe_resources, mermaid
from graphops.plan._planner import Boundary, Plan, Stage, plan
from graphops.plan._svg import svg

__all__ = ["Boundary", "Plan", "Stage", "describe_resources", "mermaid", "plan", "svg"]
