"""The planner: which nodes fuse into which stages, and the diagram of the result."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel

from graphops import Graph, PlanError, Resources, Scaling, node
from graphops.diagram import mermaid
from graphops.graph import Node
from graphops.planner import Boundary, plan
from tests.fixtures.graphs import valid


class Request(BaseModel):
    x: list[float]


class Response(BaseModel):
    c: float


def chain(**settings: dict[str, Any]) -> Graph:
    """The graph x -> a -> b -> c, with `node(...)` keyword arguments per node name."""

    @node(**settings.get("a", {}))
    def a(x: np.ndarray) -> np.ndarray:
        return x + 1

    @node(**settings.get("b", {}))
    def b(a: np.ndarray) -> np.ndarray:
        return a * 2

    @node(**settings.get("c", {}))
    def c(b: np.ndarray) -> np.ndarray:
        return b - 3

    return Graph("chain", "1.0.0", Request, Response, nodes=[c, b, a])


def names(nodes: tuple[Node, ...]) -> list[str]:
    return [n.name for n in nodes]


def test_valid_graph_fuses_cpu_nodes_and_isolates_the_model() -> None:
    p = plan(valid.graph)

    assert p.fused
    assert [names(s.nodes) for s in p.stages] == [
        ["clipped", "centered", "features"],
        ["logits"],
        ["postprocess"],
    ]
    assert [s.kind for s in p.stages] == [Boundary.CPU, Boundary.MODEL, Boundary.CPU]
    assert [s.name for s in p.stages] == ["clipped_to_features", "logits", "postprocess"]


def test_stage_inputs_outputs_and_settings() -> None:
    cpu, model, post = plan(valid.graph).stages

    assert (cpu.inputs, cpu.outputs) == (("x",), ("features",))
    assert (model.inputs, model.outputs) == (("features",), ("logits",))
    assert (post.inputs, post.outputs) == (("logits",), ("label", "score"))
    assert model.model_nodes == (valid.logits,)
    assert model.batching is not None and model.batching.max_batch_size == 8
    assert cpu.batching is None
    assert model.resources == Resources(cpus=0.5)


def test_gpu_node_gets_its_own_stage() -> None:
    p = plan(chain(b={"resources": Resources(gpus=1)}))

    assert [names(s.nodes) for s in p.stages] == [["a"], ["b"], ["c"]]
    assert [s.kind for s in p.stages] == [Boundary.CPU, Boundary.GPU, Boundary.CPU]
    assert p.stages[1].resources.gpus == 1


def test_different_scaling_breaks_fusion() -> None:
    two = {"scaling": Scaling(replicas=2)}

    p = plan(chain(b=two, c=two))

    assert [names(s.nodes) for s in p.stages] == [["a"], ["b", "c"]]
    assert p.stages[1].scaling == Scaling(replicas=2)


def test_no_fusion_gives_one_stage_per_node() -> None:
    p = plan(valid.graph, fuse=False)

    assert not p.fused
    assert [names(s.nodes) for s in p.stages] == [[n.name] for n in valid.graph.order]
    assert {s.kind for s in p.stages} == {Boundary.UNFUSED}
    assert p.stage_of(valid.features).name == "features"


def test_explicit_stage_fuses_what_the_planner_would_split() -> None:
    p = plan(chain(b={"resources": Resources(gpus=1), "stage": "x"}, c={"stage": "x"}))

    assert [names(s.nodes) for s in p.stages] == [["a"], ["b", "c"]]
    explicit = p.stages[1]
    assert (explicit.name, explicit.kind) == ("x", Boundary.EXPLICIT)
    assert explicit.resources == Resources(cpus=1, gpus=1)
    assert (explicit.inputs, explicit.outputs) == (("a",), ("c",))


def test_explicit_stage_must_be_contiguous() -> None:
    g = chain(a={"stage": "x"}, c={"stage": "x"})

    with pytest.raises(PlanError, match='Stage "x" is not contiguous: b must run between') as info:
        plan(g)

    assert info.value.node == "c"
    assert info.value.file == g.node("c").file
    assert info.value.line == g.node("c").line


def test_explicit_stage_must_share_scaling() -> None:
    g = chain(b={"stage": "x"}, c={"stage": "x", "scaling": Scaling(replicas=3)})

    with pytest.raises(PlanError, match='stage "x" declare different scaling'):
        plan(g)


def test_mermaid_draws_stages_and_columns() -> None:
    p = plan(valid.graph)

    text = mermaid(p)
    lines = text.splitlines()

    assert lines[0] == "flowchart LR"
    assert sum(line.lstrip().startswith("subgraph ") for line in lines) == len(p.stages) == 3
    assert sum(line.strip() == "end" for line in lines) == 3
    assert '  subgraph s0["clipped_to_features · cpu · 1 CPU"]' in lines
    assert "  request -->|x| n_clipped" in lines
    assert "  n_features -->|features| n_logits" in lines
    assert "  n_postprocess -->|label| response" in lines
    assert "  n_postprocess -->|score| response" in lines
    assert "models:/m@champion" in text
    assert text.endswith("\n")
