"""The SVG picture of a plan, `graphops plan --svg`, and the plan in the validation report."""

from __future__ import annotations

import itertools
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from graphops import (
    Batching,
    Feature,
    FeatureTable,
    Graph,
    Resources,
    TorchModel,
    lookup,
    model,
    node,
)
from graphops.diagram import mermaid, svg
from graphops.diagram._layout import Rect, layout
from graphops.diagram._mermaid import _stage_label
from graphops.planner import Plan, plan
from graphops.validation import (
    GraphValidation,
    ValidationReport,
    markdown,
    to_json,
    write_markdown,
)
from tests.fixtures.graphs import valid

SVG = "{http://www.w3.org/2000/svg}"
WriteGraph = Callable[[Path, str, str], Path]

ITEMS = FeatureTable(
    name="items",
    key="item_id",
    source="items.parquet",
    features={"quality": Feature(), "age": Feature()},
)


class Request(BaseModel):
    user: int
    candidates: list[int]
    text: str


class Response(BaseModel):
    ranked: list[int]
    spam: float
    text: str  # passed through from the request untouched


def wide() -> Graph:
    """Fifteen nodes: a lookup, parallel branches, two models, a GPU node, an explicit stage."""
    items = lookup(
        "items", table=ITEMS, key="candidates", prefix="item_", resources=Resources(cpus=0.25)
    )

    @node
    def tokens(text: str) -> np.ndarray:
        return np.zeros(1)

    @node
    def lowered(tokens: np.ndarray) -> np.ndarray:
        return tokens

    @node
    def user_bucket(user: np.ndarray) -> np.ndarray:
        return user

    @node(resources=Resources(cpus=1, gpus=1))
    def embedded(lowered: np.ndarray) -> np.ndarray:
        return lowered

    @model("models:/spam@champion", batching=Batching(max_batch_size=16, max_wait_ms=3))
    def spam_logit(embedded: np.ndarray, model: TorchModel) -> np.ndarray:
        return embedded

    @node
    def spam(spam_logit: np.ndarray) -> np.ndarray:
        return spam_logit

    @node(stage="a<b & 'c'")  # escaped in the SVG
    def crossed(
        item_quality: np.ndarray, item_age: np.ndarray, user_bucket: np.ndarray
    ) -> np.ndarray:
        return item_quality

    @node(stage="a<b & 'c'")
    def normed(crossed: np.ndarray) -> np.ndarray:
        return crossed

    @model("models:/ranker/7", resources=Resources(cpus=0.5, memory=2 * 1024**3))
    def scores(normed: np.ndarray, embedded: np.ndarray, model: TorchModel) -> np.ndarray:
        return normed

    @node
    def order(scores: np.ndarray) -> np.ndarray:
        return scores

    @node
    def filtered(order: np.ndarray, spam: np.ndarray) -> np.ndarray:
        return order

    @node
    def deduped(filtered: np.ndarray) -> np.ndarray:
        return filtered

    @node
    def boosted(deduped: np.ndarray, user_bucket: np.ndarray) -> np.ndarray:
        return deduped

    @node
    def ranked(boosted: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        return boosted

    nodes = [items, tokens, lowered, user_bucket, embedded, spam_logit, spam, crossed, normed]
    nodes += [scores, order, filtered, deduped, boosted, ranked]
    return Graph("wide", "0.1.0", Request, Response, nodes=nodes)


PLANS = {
    "valid": lambda: plan(valid.graph),
    "valid-unfused": lambda: plan(valid.graph, fuse=False),
    "wide": lambda: plan(wide()),
    "wide-unfused": lambda: plan(wide(), fuse=False),
}


def columns(p: Plan) -> set[str]:
    """Every column drawn on an edge: node inputs and response fields."""
    return {c for n in p.graph.nodes for c in n.inputs} | set(p.graph.response_fields)


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


@pytest.mark.parametrize("name", PLANS)
def test_svg_is_xml_naming_every_node_stage_and_column(name: str) -> None:
    p = PLANS[name]()

    root = ET.fromstring(svg(p))
    shown = texts(root)

    assert root.tag == f"{SVG}svg"
    assert {n.name for n in p.graph.nodes} <= set(shown)
    assert {_stage_label(s) for s in p.stages} <= set(shown)
    assert columns(p) <= set(shown)
    assert "request" in shown and "response" in shown
    # one edge, and one label, per pair of nodes, whatever the number of columns between them
    assert len(root.findall(f".//{SVG}g[@class='label']")) == len(set(_flows(p)))
    assert len(root.findall(f".//{SVG}path[@class='edge']")) == len(set(_flows(p)))


def _flows(p: Plan) -> list[tuple[str, str]]:
    g = p.graph
    pairs = [(g.producer(c), n.name) for n in g.order for c in n.inputs]
    pairs += [(g.producer(c), "response") for c in g.response_fields]
    return [(src.name if src else "request", dst) for src, dst in pairs]


def test_svg_is_deterministic() -> None:
    first = svg(plan(wide()))
    assert svg(plan(wide())) == first  # a fresh graph, equal content: the same bytes
    assert "0x" not in first  # no object ids leak into the picture


def test_special_characters_are_escaped() -> None:
    text = svg(plan(wide()))

    root = ET.fromstring(text)  # would raise on a bare "<" or "&"
    assert "a<b & 'c' · explicit · 1 CPU" in texts(root)
    assert "a&lt;b &amp;" in text


def test_model_and_feature_lookup_shapes() -> None:
    root = ET.fromstring(svg(plan(wide())))
    groups = {g.get("data-name"): g for g in root.iter(f"{SVG}g") if "node" in g.get("class", "")}

    assert groups["scores"].get("class") == "node model"
    assert "models:/ranker/7" in texts(groups["scores"])
    assert len(groups["scores"].findall(f"{SVG}line")) == 2  # the side bars
    assert groups["items"].get("class") == "node lookup"
    assert "features: items" in texts(groups["items"])
    assert len(groups["items"].findall(f"{SVG}path")) == 2  # a cylinder: body and rim
    assert groups["tokens"].get("class") == "node node"
    assert groups["request"].get("class") == "node request"
    assert groups["response"].get("class") == "node response"


@pytest.mark.parametrize("name", PLANS)
def test_layout_has_no_overlaps(name: str) -> None:
    p = PLANS[name]()
    lay = layout(p)
    nodes = [it.rect for it in lay.items.values()]
    boxes = [box for _, box in lay.boxes]
    labels = [e.label for e in lay.edges]

    for a, b in itertools.combinations(nodes + labels, 2):
        assert not a.overlaps(b), (a, b)
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    canvas = Rect(0, 0, lay.width, lay.height)
    for rect in nodes + boxes + labels:
        assert _inside(rect, canvas)
    for stage, box in lay.boxes:
        for n in stage.nodes:
            assert _inside(lay.items[n.name].rect, box)
    for e in lay.edges:  # left to right
        assert lay.items[e.source].rect.right <= e.label.x < lay.items[e.target].rect.x


def _inside(inner: Rect, outer: Rect) -> bool:
    return (
        outer.x <= inner.x
        and inner.right <= outer.right
        and outer.y <= inner.y
        and inner.bottom <= outer.bottom
    )


def test_layers_follow_the_longest_path() -> None:
    lay = layout(plan(valid.graph, fuse=False))
    xs = [
        lay.items[n].rect.x for n in ("request", *[n.name for n in valid.graph.order], "response")
    ]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    # a chain is drawn on one line: every item centred at the same height
    assert len({round(it.rect.y + it.rect.h / 2, 3) for it in lay.items.values()}) == 1


def test_cli_writes_svg_and_mermaid(tmp_path: Path, write_graph: WriteGraph) -> None:
    from graphops.cli import app

    source = Path(valid.__file__).read_text().replace('"valid"', '"tiny"')
    write_graph(tmp_path, "tiny", source)
    picture, diagram = tmp_path / "out" / "tiny.svg", tmp_path / "tiny.md"
    picture.parent.mkdir()

    result = CliRunner().invoke(
        app,
        ["--repo", str(tmp_path), "plan", "tiny", "--svg", str(picture), "--mermaid", str(diagram)],
    )

    assert result.exit_code == 0, result.output
    the_plan = plan(_load(tmp_path, "tiny"))
    assert picture.read_text() == svg(the_plan)
    assert diagram.read_text() == f"```mermaid\n{mermaid(the_plan)}```\n"
    assert f"Picture written to {picture}" in result.output.replace("\n", "")


def _load(repo: Path, name: str) -> Graph:
    from graphops.graph import load_graph

    return load_graph(repo, name).graph


def test_report_embeds_each_plan_and_links_its_picture(tmp_path: Path) -> None:
    p = plan(valid.graph)
    ok = GraphValidation(graph="a", status="passed", plan=mermaid(p), plan_svg=svg(p))
    other = GraphValidation(graph="b", status="failed", plan=mermaid(p), plan_svg=svg(p))
    broken = GraphValidation(graph="c", status="error", problems=["no plan: it did not load"])
    report = ValidationReport(graphs=[ok, other, broken])

    text = markdown(report)
    assert text.count("```mermaid\nflowchart LR\n") == 2
    assert text.count("<details><summary>Plan") == 2 and ".plan.svg" not in text

    written = write_markdown(report, tmp_path / "report.md")
    assert written == [tmp_path / "a.plan.svg", tmp_path / "b.plan.svg", tmp_path / "report.md"]
    text = (tmp_path / "report.md").read_text()
    assert "Plan picture: [a.plan.svg](a.plan.svg)" in text
    assert "Plan picture: [b.plan.svg](b.plan.svg)" in text
    assert (tmp_path / "a.plan.svg").read_text() == svg(p)
    ET.fromstring((tmp_path / "b.plan.svg").read_text())
    # JSON keeps the Mermaid text (small, diffable) but not the SVG.
    data = json.loads(to_json(report))
    assert data["graphs"][0]["plan"] == mermaid(p) and "plan_svg" not in data["graphs"][0]
