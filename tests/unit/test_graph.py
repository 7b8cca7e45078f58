"""The authoring API: nodes, graphs, settings, model URIs and metrics."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pytest
from pydantic import ValidationError

from graphops import (
    Batching,
    DuplicateColumnError,
    Graph,
    GraphDefinitionError,
    InvalidModelURIError,
    Metric,
    MissingColumnError,
    ModelNode,
    ModelURI,
    Node,
    Resources,
    Scaling,
    Validation,
    node,
)
from graphops.graph import BUILTIN_METRICS, evaluate
from tests.fixtures.graphs import valid
from tests.fixtures.parts import TotalResponse, XRequest, total


def make_graph(**overrides: Any) -> Graph:
    arguments: dict[str, Any] = {
        "name": "g",
        "version": "1.0.0",
        "request": XRequest,
        "response": TotalResponse,
        "nodes": [total],
    }
    return Graph(**(arguments | overrides))


# -- nodes ---------------------------------------------------------------------------------------


def test_node_inputs_are_parameters_and_output_is_function_name() -> None:
    assert isinstance(valid.centered, Node)
    assert valid.centered.name == "centered"
    assert valid.centered.inputs == ("clipped",)
    assert valid.centered.outputs == ("centered",)
    assert valid.centered.resources == Resources()
    assert valid.centered.stage is None


def test_typeddict_return_names_several_outputs() -> None:
    assert valid.postprocess.inputs == ("logits",)
    assert valid.postprocess.outputs == ("label", "score")


def test_model_node_receives_model_but_does_not_read_it_as_a_column() -> None:
    logits = valid.logits
    assert isinstance(logits, ModelNode)
    assert logits.inputs == ("features",)
    assert logits.outputs == ("logits",)
    assert logits.uri == ModelURI(name="m", alias="champion")
    assert logits.batching == Batching(max_batch_size=8, max_wait_ms=2.0)
    assert logits.resources.cpus == 0.5


def test_model_node_without_model_parameter_is_rejected() -> None:
    from graphops import model

    with pytest.raises(GraphDefinitionError, match='parameter named "model"'):

        @model("models:/m/1")
        def predict(x: np.ndarray) -> np.ndarray:
            return x


def test_node_stays_a_plain_function() -> None:
    out = valid.clipped(np.array([[-20.0, 3.0, 11.0]]))

    np.testing.assert_array_equal(out, [[-10.0, 3.0, 10.0]])


def test_run_maps_a_batch_to_output_columns() -> None:
    batch = {"clipped": np.array([[1.0, 3.0], [2.0, 2.0]]), "unrelated": np.array([7, 8])}

    out = valid.centered.run(batch)

    assert list(out) == ["centered"]
    np.testing.assert_array_equal(out["centered"], [[-1.0, 1.0], [0.0, 0.0]])


def test_run_of_typeddict_node_returns_every_output() -> None:
    out = valid.postprocess.run({"logits": np.array([[0.1, 0.7, 0.2], [0.9, 0.0, 0.1]])})

    assert set(out) == {"label", "score"}
    np.testing.assert_array_equal(out["label"], [1, 0])
    np.testing.assert_allclose(out["score"], [0.7, 0.9])


def test_run_of_model_node_passes_the_model() -> None:
    def double(features: np.ndarray) -> np.ndarray:
        return features * 2

    out = valid.logits.run({"features": np.array([[1.0, 2.0]])}, model=double)

    np.testing.assert_array_equal(out["logits"], [[2.0, 4.0]])


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("def f(*columns: np.ndarray) -> np.ndarray: ...", "*args/**kwargs"),
        ("def f(x: np.ndarray, **more: np.ndarray) -> np.ndarray: ...", "*args/**kwargs"),
        ("def f(x: np.ndarray = None) -> np.ndarray: ...", 'Parameter "x" has a default value'),
        ("def Scaled(x: np.ndarray) -> np.ndarray: ...", '"Scaled" as a node name'),
    ],
    ids=["args", "kwargs", "default", "camel_case"],
)
def test_node_rejects_bad_signatures(source: str, says: str, tmp_path: Path) -> None:
    # Written to a file so inspect can find the source, as for a real graph module.
    module = tmp_path / "bad_node.py"
    module.write_text(f"import numpy as np\n\n{source}\n")
    namespace: dict[str, Any] = {}
    exec(compile(module.read_text(), str(module), "exec"), namespace)

    with pytest.raises(GraphDefinitionError) as info:
        node(next(v for k, v in namespace.items() if k in ("f", "Scaled")))

    assert says in str(info.value)
    assert info.value.file == str(module)
    assert info.value.line == 3


# -- graphs --------------------------------------------------------------------------------------


def test_graph_order_is_topological_whatever_the_declaration_order() -> None:
    nodes = [valid.clipped, valid.centered, valid.features, valid.logits, valid.postprocess]
    expected = ["clipped", "centered", "features", "logits", "postprocess"]

    for permutation in itertools.permutations(nodes):
        g = Graph("valid", "1.0.0", valid.Request, valid.Response, nodes=permutation)
        assert [n.name for n in g.order] == expected


class Pair(TypedDict):
    left: np.ndarray
    right: np.ndarray


def test_graph_order_breaks_ties_by_declaration_order() -> None:
    @node
    def split(x: np.ndarray) -> Pair:
        return {"left": x, "right": x}

    @node
    def a(left: np.ndarray) -> np.ndarray:
        return left

    @node
    def b(right: np.ndarray) -> np.ndarray:
        return right

    @node
    def total(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    first = make_graph(nodes=[total, b, a, split])
    second = make_graph(nodes=[a, total, split, b])

    assert [n.name for n in first.order] == ["split", "b", "a", "total"]
    assert [n.name for n in second.order] == ["split", "a", "b", "total"]
    assert first.upstream(total) == (b, a)
    assert first.producer("left") is split
    assert first.producer("x") is None


def test_graph_exposes_its_structure() -> None:
    g = valid.graph

    assert g.request_fields == ("x",)
    assert g.response_fields == ("label", "score")
    assert g.model_nodes == (valid.logits,)
    assert g.node("features") is valid.features


def test_graph_node_lookup_suggests_the_closest_name() -> None:
    with pytest.raises(KeyError, match='Did you mean "centered"'):
        valid.graph.node("centred")


@pytest.mark.parametrize("name", ["My-Graph", "1graph", "", "graph name"])
def test_graph_rejects_bad_names(name: str) -> None:
    with pytest.raises(GraphDefinitionError, match="lowercase snake_case"):
        make_graph(name=name)


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "01.0.0", 1])
def test_graph_rejects_non_semver_versions(version: object) -> None:
    from graphops import InvalidVersionError

    with pytest.raises(InvalidVersionError, match=r"MAJOR\.MINOR\.PATCH"):
        make_graph(version=version)


@pytest.mark.parametrize("version", ["0.1.0", "1.2.3-rc.1", "2.0.0+build.7"])
def test_graph_accepts_semver_versions(version: str) -> None:
    assert make_graph(version=version).version == version


@pytest.mark.parametrize("field", ["request", "response"])
def test_graph_rejects_schemas_that_are_not_pydantic_models(field: str) -> None:
    class NotAModel:
        x: list[float]

    with pytest.raises(GraphDefinitionError, match=f"for {field}. It must be a pydantic BaseModel"):
        make_graph(**{field: NotAModel})


def test_graph_rejects_no_nodes_and_duplicate_node_names() -> None:
    with pytest.raises(GraphDefinitionError, match="no nodes"):
        make_graph(nodes=[])
    with pytest.raises(GraphDefinitionError, match='Two nodes are named "total"'):
        make_graph(nodes=[total, total])
    with pytest.raises(GraphDefinitionError, match="Every entry must be a node"):
        make_graph(nodes=[total.fn])


def test_graph_rejects_a_node_overwriting_a_request_field() -> None:
    @node
    def x(x: np.ndarray) -> np.ndarray:
        return x

    with pytest.raises(
        DuplicateColumnError, match='"x" is written by this node but is already a request'
    ):
        make_graph(nodes=[x, total])


def test_graph_rejects_a_metric_column_no_node_produces() -> None:
    validation = Validation(
        dataset=Path("v.parquet"), label="y", metrics=(Metric(name="mae", column="totl"),)
    )

    with pytest.raises(
        MissingColumnError, match=r'metric "mae" column "totl".*Did you mean "total"'
    ):
        make_graph(validation=validation)


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: Resources(cpus=-1),
        lambda: Resources(gpus=-0.5),
        lambda: Resources(cpu=2),
        lambda: Scaling(replicas=5, min_replicas=1, max_replicas=3),
        lambda: Scaling(min_replicas=1),
        lambda: Scaling(replicas=0),
        lambda: Scaling(replica=2),
        lambda: Batching(max_batch_size=0),
        lambda: Batching(max_wait=3),
    ],
    ids=[
        "negative_cpus",
        "negative_gpus",
        "resources_unknown_key",
        "replicas_above_max",
        "min_without_max",
        "zero_replicas",
        "scaling_unknown_key",
        "empty_batch",
        "batching_unknown_key",
    ],
)
def test_settings_reject_invalid_values(build: Callable[[], object]) -> None:
    with pytest.raises(ValidationError):
        build()


def test_settings_accept_valid_values_and_are_frozen() -> None:
    scaling = Scaling(replicas=2, min_replicas=1, max_replicas=4)
    resources = Resources(cpus=0.5, gpus=1)

    assert scaling.autoscaling
    assert not Scaling().autoscaling
    assert resources.needs_gpu
    assert not Resources().needs_gpu
    with pytest.raises(ValidationError):
        resources.cpus = 2  # type: ignore[misc]


# -- model URIs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/digits@champion", ModelURI("digits", alias="champion")),
        ("models:/digits/3", ModelURI("digits", version=3)),
        ("models:/team.digits-v2@prod_1", ModelURI("team.digits-v2", alias="prod_1")),
    ],
)
def test_model_uri_parses_and_round_trips(uri: str, expected: ModelURI) -> None:
    parsed = ModelURI.parse(uri)

    assert parsed == expected
    assert str(parsed) == uri


@pytest.mark.parametrize(
    "uri", ["models:digits", "models:/digits", "models:/digits/0", "runs:/abc/model", "models:/d@"]
)
def test_model_uri_rejects_other_forms(uri: str) -> None:
    with pytest.raises(InvalidModelURIError, match=f'Got "{uri}" for the model URI'):
        ModelURI.parse(uri)


# -- metrics -------------------------------------------------------------------------------------


def test_builtin_metrics_are_exactly_those_metric_accepts_by_name() -> None:
    assert set(BUILTIN_METRICS) == {"accuracy", "auc", "mae", "rmse"}
    for name in BUILTIN_METRICS:
        assert Metric(name=name, column="c").fn is None
    with pytest.raises(ValidationError) as info:
        Metric(name="f1", column="c")
    assert f"({', '.join(BUILTIN_METRICS)})" in str(info.value)


def test_custom_metric_needs_a_function() -> None:
    def f1(predictions: np.ndarray, labels: np.ndarray) -> float:
        return 0.5

    assert Metric(name="f1", column="c", fn=f1).fn is f1


def test_evaluate_computes_metrics_and_gates() -> None:
    validation = Validation(
        dataset=Path("v.parquet"),
        label="y",
        metrics=(
            Metric(name="accuracy", column="label", min=0.9),
            Metric(name="accuracy", column="label", min=0.7),
            Metric(name="mae", column="label", max=0.1),
            Metric(name="rmse", column="label"),
            Metric(name="worst", column="label", fn=lambda p, y: float(np.max(np.abs(p - y)))),
        ),
    )
    columns = {"label": np.array([1, 2, 3, 4]), "y": np.array([1, 2, 3, 5])}

    results = evaluate(validation, columns)

    assert [r.value for r in results] == pytest.approx([0.75, 0.75, 0.25, 0.5, 1.0])
    assert [r.passed for r in results] == [False, True, False, True, True]
    assert [r.gate for r in results] == [">= 0.9", ">= 0.7", "<= 0.1", "", ""]


def test_unit_tests_cannot_start_ray() -> None:
    import ray

    with pytest.raises(RuntimeError, match="move the test to tests/integration"):
        ray.init()


def test_domain_errors_survive_pickling_with_every_field() -> None:
    import pickle

    from graphops import RunError

    error = RunError("boom.", fix="Fix it.", graph="g", node="n", file="/x/graph.py", line=7)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is RunError and str(again) == str(error)
    assert (again.graph, again.node, again.file, again.line, again.fix) == (
        "g",
        "n",
        "/x/graph.py",
        7,
        "Fix it.",
    )
