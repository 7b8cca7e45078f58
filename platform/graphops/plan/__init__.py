"""The plan: a graph cut into stages (fused nodes). Imports neither Ray nor MLflow.

Its drawings (Mermaid, SVG) live in `graphops.diagram`.
"""

from graphops.plan._planner import Boundary, Plan, Stage, plan

__all__ = ["Boundary", "Plan", "Stage", "plan"]
