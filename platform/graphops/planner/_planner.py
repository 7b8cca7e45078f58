"""The planner: cut a graph into stages, fusing adjacent compatible nodes.

A stage is one Serve deployment online and one ``map_batches`` operator offline; nodes fused into
a stage call each other in-process, so no serialization happens between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from graphops.errors import PlanError
from graphops.graph import Batching, Graph, ModelNode, Node, Resources, Scaling


class Boundary(StrEnum):
    """Why a stage exists as its own unit."""

    CPU = "cpu"
    MODEL = "model"
    GPU = "gpu"
    EXPLICIT = "explicit"
    UNFUSED = "unfused"


@dataclass(frozen=True)
class Stage:
    """A group of nodes that runs as one unit, in order, in one process."""

    name: str
    nodes: tuple[Node, ...]
    resources: Resources
    scaling: Scaling
    kind: Boundary
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def model_nodes(self) -> tuple[ModelNode, ...]:
        """Model nodes inside this stage."""
        return tuple(n for n in self.nodes if isinstance(n, ModelNode))

    @property
    def batching(self) -> Batching | None:
        """Batching of the stage: that of its model node, if it has one."""
        models = self.model_nodes
        return models[0].batching if models else None


@dataclass(frozen=True)
class Plan:
    """A graph cut into stages, in execution order."""

    graph: Graph
    stages: tuple[Stage, ...]
    fused: bool

    def stage_of(self, node: Node) -> Stage:
        """The stage holding ``node``."""
        return next(s for s in self.stages if node in s.nodes)


def plan(graph: Graph, *, fuse: bool = True) -> Plan:
    """Cut ``graph`` into stages.

    Adjacent nodes (in the graph's topological order) are fused when both are CPU-only,
    non-model nodes with the same scaling. Model nodes and GPU nodes get stages of their own, so
    an environment that overrides GPUs to CPU still keeps the model stage apart. Nodes declaring
    the same ``stage=`` name are fused regardless (an explicit override).

    Args:
        graph: The graph to plan.
        fuse: ``False`` gives one stage per node (to measure what fusion buys); nodes sharing an
            explicit ``stage=`` stay together.

    Returns:
        The `Plan`.

    Raises:
        PlanError: An explicit stage is split by other nodes or mixes scaling settings.
    """
    groups: list[tuple[Boundary, list[Node]]] = []
    for n in graph.order:
        last = groups[-1] if groups else None
        if n.stage is not None:
            owner = next((g for g in groups if g[1][0].stage == n.stage), None)
            if owner is not None and owner is not last:
                between = [m.name for g in groups[groups.index(owner) + 1 :] for m in g[1]]
                raise PlanError(
                    f'Stage "{n.stage}" is not contiguous: {", ".join(between)} must run between its '
                    f'nodes "{owner[1][-1].name}" and "{n.name}".',
                    fix=f'Add stage="{n.stage}" to those nodes too, or drop it from "{n.name}".',
                    graph=graph.name,
                    node=n.name,
                    file=n.file,
                    line=n.line,
                )
            if owner is not None:
                if owner[1][0].scaling != n.scaling:
                    raise PlanError(
                        f'Nodes of stage "{n.stage}" declare different scaling.',
                        fix="Give every node of a stage the same Scaling.",
                        graph=graph.name,
                        node=n.name,
                        file=n.file,
                        line=n.line,
                    )
                owner[1].append(n)
            else:
                groups.append((Boundary.EXPLICIT, [n]))
        elif not fuse:
            groups.append((Boundary.UNFUSED, [n]))
        elif isinstance(n, ModelNode):
            groups.append((Boundary.MODEL, [n]))
        elif n.resources.needs_gpu:
            groups.append((Boundary.GPU, [n]))
        elif last is not None and last[0] is Boundary.CPU and last[1][-1].scaling == n.scaling:
            last[1].append(n)
        else:
            groups.append((Boundary.CPU, [n]))
    return Plan(graph, tuple(_stage(graph, kind, nodes) for kind, nodes in groups), fuse)


def _stage(graph: Graph, kind: Boundary, nodes: list[Node]) -> Stage:
    produced = {c for n in nodes for c in n.outputs}
    inputs = dict.fromkeys(c for n in nodes for c in n.inputs if c not in produced)
    needed_later = {c for n in graph.nodes if n not in nodes for c in n.inputs}
    needed_later.update(graph.response_fields)
    if graph.validation:
        needed_later.update(m.column for m in graph.validation.metrics)
    outputs = tuple(c for n in nodes for c in n.outputs if c in needed_later)
    if kind is Boundary.EXPLICIT:
        name = nodes[0].stage or nodes[0].name
    else:
        name = nodes[0].name if len(nodes) == 1 else f"{nodes[0].name}_to_{nodes[-1].name}"
    return Stage(
        name=name,
        nodes=tuple(nodes),
        resources=_combined(nodes),
        scaling=nodes[0].scaling,
        kind=kind,
        inputs=tuple(inputs),
        outputs=outputs,
    )


def _combined(nodes: list[Node]) -> Resources:
    """Nodes of a stage run one after another, so the stage needs the largest of each resource."""
    memories = [n.resources.memory for n in nodes if n.resources.memory is not None]
    return Resources(
        cpus=max(n.resources.cpus for n in nodes),
        gpus=max(n.resources.gpus for n in nodes),
        memory=max(memories) if memories else None,
    )
