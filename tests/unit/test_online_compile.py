"""The online compiler's pure parts: deployments from a plan, HTTP parsing, builder args, parity."""

from __future__ import annotations

import json

import numpy as np
import pytest

from graphops import PlanError, ServeError
from graphops.graph import Scaling
from graphops.planner import plan
from graphops.runtime._errors import HttpError
from graphops.runtime._http import GraphHttp
from graphops.runtime.online import app
from graphops.runtime.schema import AppArgs, DeploymentOverride, deployment_specs
from graphops.validation.parity import _compare
from tests.fixtures.graphs import valid


def test_fused_plan_runs_cpu_stages_in_the_ingress_and_the_model_apart() -> None:
    specs = deployment_specs(plan(valid.graph))
    assert [s.name for s in specs] == ["ingress", "logits"]
    ingress, model = specs
    assert ingress.nodes == ("clipped", "centered", "features", "postprocess")
    assert model.nodes == ("logits",)
    assert (model.max_batch_size, model.batch_wait_timeout_s) == (8, 0.002)
    assert model.max_ongoing_requests == 16  # twice the batch: one runs while the next fills
    assert model.options()["ray_actor_options"] == {"num_cpus": 0.5}


def test_unfused_plan_gives_every_node_a_deployment_behind_an_http_only_ingress() -> None:
    specs = deployment_specs(plan(valid.graph, fuse=False))
    assert [s.name for s in specs] == [
        "ingress",
        "clipped",
        "centered",
        "features",
        "logits",
        "postprocess",
    ]
    assert specs[0].nodes == () and specs[0].cpus == pytest.approx(0.1)


def test_gpu_drop_cpu_budget_and_overrides() -> None:
    the_plan = plan(valid.graph, fuse=False)
    squeezed = deployment_specs(the_plan, AppArgs(graph="valid", cpu_budget=2.0))
    assert sum(s.cpus for s in squeezed) == pytest.approx(2.0, abs=1e-3)
    scaled = deployment_specs(
        the_plan,
        AppArgs(
            graph="valid",
            deployments={"logits": DeploymentOverride(min_replicas=1, max_replicas=4, gpus=1)},
        ),
    )
    logits = next(s for s in scaled if s.name == "logits")
    assert logits.gpus == 1 and logits.scaling == Scaling(min_replicas=1, max_replicas=4)
    options = logits.options()
    assert options["autoscaling_config"]["max_replicas"] == 4 and "num_replicas" not in options
    assert options["ray_actor_options"]["num_gpus"] == 1
    cpu_only = deployment_specs(
        the_plan,
        AppArgs(graph="valid", deployments={"logits": DeploymentOverride(gpus=1)}, cpu_only=True),
    )
    assert all(s.gpus == 0 for s in cpu_only)


def test_override_of_an_unknown_deployment_suggests_the_name() -> None:
    with pytest.raises(PlanError, match='Did you mean "logits"'):
        deployment_specs(
            plan(valid.graph),
            AppArgs(graph="valid", deployments={"logit": DeploymentOverride(replicas=2)}),
        )


def test_bad_builder_args_name_the_field() -> None:
    with pytest.raises(ServeError, match=r"args\.replicas"):
        app({"graph": "digits", "replicas": 3})
    with pytest.raises(ServeError, match=r"args\.fuse"):
        app({"graph": "digits", "fuse": "sometimes"})


@pytest.fixture
def http() -> GraphHttp:
    return GraphHttp(valid.graph, route="/valid", max_body_bytes=200, example={"x": [1.0]})


def test_one_object_and_a_list_become_columns(http: GraphHttp) -> None:
    columns, single = http.parse(b'{"x": [1, 2]}')
    assert single and columns["x"].tolist() == [[1.0, 2.0]]
    columns, single = http.parse(b' [{"x": [1, 2]}, {"x": [3, 4]}]')
    assert not single and columns["x"].shape == (2, 2)
    out = {"label": np.array([3, 4]), "score": np.array([0.5, 0.25])}
    assert json.loads(http.respond(out, single=False)) == [
        {"label": 3, "score": 0.5},
        {"label": 4, "score": 0.25},
    ]
    one = {"label": np.array([3]), "score": np.array([0.5])}
    assert json.loads(http.respond(one, single=True)) == {"label": 3, "score": 0.5}


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b'{"y": [1]}', 422, "field x: Field required"),
        (b'[{"x": [1]}, {"x": "no"}]', 422, "row 2, field x"),
        (b"{not json", 422, "Invalid JSON"),
        (b"[]", 422, "empty list"),
        (b'{"x": [' + b"1," * 200 + b"1]}", 413, "at most 200 bytes"),
    ],
)
def test_bad_bodies_are_explained(http: GraphHttp, body: bytes, status: int, says: str) -> None:
    with pytest.raises(HttpError) as caught:
        http.parse(body)
    assert caught.value.status == status
    payload = json.loads(caught.value.json())
    assert says in payload["error"] and payload["fix"]


def test_openapi_is_generated_from_the_schemas(http: GraphHttp) -> None:
    doc = http.openapi()
    assert doc["info"]["version"] == "1.2.3" and doc["servers"] == [{"url": "/valid"}]
    post = doc["paths"]["/"]["post"]
    assert {"413", "422"} <= set(post["responses"])
    assert {"Request", "Response"} <= set(doc["components"]["schemas"])
    assert "/health" in doc["paths"]


def test_parity_compares_floats_within_tolerance_and_the_rest_exactly() -> None:
    expected = {"label": np.array([1, 2]), "score": np.array([0.5, 0.25])}
    same = _compare(
        [{"label": 1, "score": 0.5 + 1e-7}, {"label": 2, "score": 0.25}],
        [{"label": 1, "score": 0.5}],
        expected,
        ["label", "score"],
        1e-5,
        2,
    )
    assert same.passed and same.max_abs_diff == pytest.approx(1e-7)
    differ = _compare(
        [{"label": 1, "score": 0.5}, {"label": 3, "score": 0.2}],
        [],
        expected,
        ["label", "score"],
        1e-5,
        1,
    )
    assert not differ.passed and differ.mismatches == 1
    assert differ.examples[0].startswith("row 2, field label: online 3, offline 2")
