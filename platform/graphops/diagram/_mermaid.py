"""Mermaid diagram of a plan: nodes, the stages they are fused into, and the columns between them."""

from __future__ import annotations

from graphops.graph import FeatureLookup, ModelNode, Resources
from graphops.planner import Plan, Stage


def describe_resources(resources: Resources) -> str:
    """``"0.5 CPU, 1 GPU, 2.0 GiB"`` style summary."""
    parts = [f"{resources.cpus:g} CPU"]
    if resources.gpus:
        parts.append(f"{resources.gpus:g} GPU")
    if resources.memory is not None:
        parts.append(f"{resources.memory / 1024**3:.1f} GiB")
    return ", ".join(parts)


def _stage_label(stage: Stage) -> str:
    label = f"{stage.name} · {stage.kind.value} · {describe_resources(stage.resources)}"
    if stage.batching:
        label += f" · batch ≤{stage.batching.max_batch_size}/{stage.batching.max_wait_ms:g}ms"
    return label


def mermaid(plan: Plan) -> str:
    """Render ``plan`` as a Mermaid ``flowchart``: one subgraph per stage, edges named by column."""
    g = plan.graph
    lines = ["flowchart LR", f'  request(["request: {", ".join(g.request_fields)}"])']
    for i, stage in enumerate(plan.stages):
        lines.append(f'  subgraph s{i}["{_stage_label(stage)}"]')
        for n in stage.nodes:
            if isinstance(n, ModelNode):
                lines.append(f'    n_{n.name}[["{n.name}<br/>{n.uri}"]]')
            elif isinstance(n, FeatureLookup):  # a cylinder: it reads a feature store
                lines.append(f'    n_{n.name}[("{n.name}<br/>features: {n.table.name}")]')
            else:
                lines.append(f'    n_{n.name}["{n.name}"]')
        lines.append("  end")
    lines.append(f'  response(["response: {", ".join(g.response_fields)}"])')
    for n in g.order:
        for column in n.inputs:
            producer = g.producer(column)
            source = f"n_{producer.name}" if producer else "request"
            lines.append(f"  {source} -->|{column}| n_{n.name}")
    for column in g.response_fields:
        producer = g.producer(column)
        source = f"n_{producer.name}" if producer else "request"
        lines.append(f"  {source} -->|{column}| response")
    return "\n".join(lines) + "\n"
