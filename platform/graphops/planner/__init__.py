"""The plan: a graph cut into stages (fused nodes), and its offline operators. Imports neither Ray nor MLflow.

Its drawings (Mermaid, SVG) live in `graphops.diagram`.
"""

from graphops.planner._offline import (
    CPU_BATCH_SIZE,
    Operator,
    can_colocate,
    offline_operators,
    pool_size,
    read_blocks,
)
from graphops.planner._planner import Boundary, Plan, Stage, plan

__all__ = [
    "CPU_BATCH_SIZE",
    "Boundary",
    "Operator",
    "Plan",
    "Stage",
    "can_colocate",
    "offline_operators",
    "plan",
    "pool_size",
    "read_blocks",
]
