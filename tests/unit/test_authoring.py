"""The authoring API beyond the basics: name=, one construction path, hint checks, dense columns."""

from __future__ import annotations

import re
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import BaseModel, create_model

from graphops import (
    ColumnTypeError,
    Feature,
    FeatureLookup,
    FeatureTable,
    Graph,
    GraphDefinitionError,
    Metric,
    ModelNode,
    Node,
    TorchModel,
    Validation,
    dense_columns,
    lookup,
    model,
    node,
)
from graphops.graph import evaluate
from graphops.graph._types import accepts, request_accepts, type_name


class XRequest(BaseModel):
    x: list[float]


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.abs(x).max(axis=1, keepdims=True)


class Pair(TypedDict):
    low: npt.NDArray[np.float32]
    high: np.ndarray


class Stats(TypedDict):
    mean: npt.NDArray[np.float64]
    count: npt.NDArray[np.int64]


def graph_of(*nodes: Node) -> Graph:
    """A graph over ``XRequest`` answering the last node's (first) output."""
    answer = create_model("Answer", **{nodes[-1].outputs[0]: (list[float], ...)})
    return Graph("g", "1.0.0", XRequest, answer, nodes=list(nodes))


# -- name= ---------------------------------------------------------------------------------------


def test_name_reuses_one_function_as_two_nodes() -> None:
    first = node(normalize, name="first")

    @node
    def shifted(first: np.ndarray) -> np.ndarray:
        return first + 1.0

    second = node(name="second")(normalize)
    assert (first.name, first.outputs, first.inputs) == ("first", ("first",), ("x",))
    assert (second.name, second.outputs) == ("second", ("second",))
    assert first.fn is second.fn is normalize
    assert normalize(np.ones((1, 2))).tolist() == [[1.0, 1.0]]  # the function stays plain
    g = graph_of(first, shifted)
    assert [n.name for n in g.order] == ["first", "shifted"]


def test_name_applies_to_model_nodes() -> None:
    def logits(features: np.ndarray, model: TorchModel) -> np.ndarray:
        return model(features)

    a = model("models:/a@champion", name="logits_a")(logits)
    b = model("models:/b/3", name="logits_b")(logits)
    assert isinstance(a, ModelNode) and isinstance(b, ModelNode)
    assert (a.name, a.outputs, a.inputs, str(a.uri)) == (
        "logits_a",
        ("logits_a",),
        ("features",),
        "models:/a@champion",
    )
    assert (b.name, str(b.uri)) == ("logits_b", "models:/b/3")


def test_a_bad_name_is_rejected_alike_by_every_node_kind() -> None:
    table = FeatureTable(name="t", key="id", source="t.parquet", features={"f": Feature()})
    declarations = [
        lambda: node(normalize, name="Bad-Name"),
        lambda: model("models:/m@champion", name="Bad-Name")(
            lambda x, model: x  # never reaches the signature: the name is checked first
        ),
        lambda: lookup("Bad-Name", table=table, key="x"),
    ]
    for declare in declarations:
        with pytest.raises(GraphDefinitionError, match='Got "Bad-Name" as a node name') as info:
            declare()
        assert info.value.node == "Bad-Name"
        assert "name=" in info.value.fix


def test_two_uses_under_one_name_are_duplicates() -> None:
    with pytest.raises(GraphDefinitionError, match='Two nodes are named "normalize"'):
        graph_of(node(normalize), node(normalize))


# -- one construction path -------------------------------------------------------------------------


def test_every_node_kind_records_its_column_types() -> None:
    @node
    def split(x: np.ndarray) -> Pair:
        return {"low": x.min(axis=1), "high": x.max(axis=1)}

    table = FeatureTable(
        name="t", key="id", source="t.parquet", features={"f": Feature(dtype="int64")}
    )
    found = lookup("feats", table=table, key="x", prefix="t_")
    assert split.input_types == {"x": np.ndarray}
    assert split.output_types == {"low": npt.NDArray[np.float32], "high": np.ndarray}
    assert isinstance(found, FeatureLookup)
    assert found.output_types == {"t_f": npt.NDArray[np.int64]}
    assert found.input_types == {}  # keys may be any array: nothing to check
    assert found.file == __file__  # where lookup() was called


# -- the hint rule ---------------------------------------------------------------------------------

F32, I64, FLOATING = npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.floating]


@pytest.mark.parametrize(
    ("wanted", "given"),
    [
        (np.ndarray, np.ndarray),
        (np.ndarray, F32),
        (F32, np.ndarray),  # the producer names no dtype: nothing to compare
        (F32, F32),
        (FLOATING, F32),
        (npt.NDArray[Any], I64),
        (Any, list[int]),
        (object, float),
        (np.ndarray, Any),
        (np.ndarray | None, np.ndarray),
        (np.ndarray, F32 | I64),
        (float, int),
        (list[float], list[int]),  # parameters of other generics are not compared
    ],
)
def test_hints_that_accept(wanted: Any, given: Any) -> None:
    assert accepts(wanted, given)


@pytest.mark.parametrize(
    ("wanted", "given"),
    [
        (I64, F32),
        (F32, FLOATING),  # a wider dtype than the consumer takes
        (list[float], np.ndarray),
        (np.ndarray, list[float]),
        (np.ndarray, float),
        (F32, F32 | I64),  # every member of a union producer must be accepted
        (int, float),
        (str, int),
    ],
)
def test_hints_that_reject(wanted: Any, given: Any) -> None:
    assert not accepts(wanted, given)


def test_request_fields_accept_array_hints_and_their_own_type() -> None:
    assert request_accepts(np.ndarray, list[float])
    assert request_accepts(F32, list[float])  # dtypes are the runtime's: not compared
    assert request_accepts(str, str)
    assert request_accepts(list[float], list[float])
    assert not request_accepts(float, list[float])
    assert not request_accepts(int, str)


def test_type_names_read_as_written() -> None:
    assert type_name(np.ndarray) == "np.ndarray"
    assert type_name(F32) == "NDArray[np.float32]"
    assert type_name(npt.NDArray[Any]) == "np.ndarray"
    assert type_name(list[float]) == "list[float]"
    assert type_name(float) == "float"
    assert type_name(np.ndarray | None) == "np.ndarray | None"


def test_a_mismatched_typeddict_column_names_graph_nodes_column_types_and_place() -> None:
    @node
    def stats(x: np.ndarray) -> Stats:
        return {"mean": x.mean(axis=1), "count": np.full(len(x), x.shape[1])}

    @node
    def share(mean: np.ndarray, count: npt.NDArray[np.float32]) -> np.ndarray:
        return mean / count

    with pytest.raises(ColumnTypeError) as info:
        graph_of(stats, share)
    error = info.value
    assert (error.graph, error.node, error.file) == ("g", "share", __file__)
    assert error.line == share.line
    message = str(error)
    assert 'Parameter "count" of node "share" is annotated NDArray[np.float32]' in message
    assert f'node "stats" ({__file__}:{stats.line}) returns "count" as NDArray[np.int64]' in message
    assert 'Annotate "count: NDArray[np.int64]"' in message
    assert isinstance(error, GraphDefinitionError)


def test_a_lookup_column_is_checked_against_its_feature_dtype() -> None:
    table = FeatureTable(
        name="t", key="id", source="t.parquet", features={"f": Feature(dtype="float32")}
    )
    found = lookup("feats", table=table, key="x", prefix="t_")

    @node
    def doubled(t_f: npt.NDArray[np.int64]) -> np.ndarray:
        return t_f * 2

    with pytest.raises(ColumnTypeError, match=re.escape('returns "t_f" as NDArray[np.float32]')):
        graph_of(found, doubled)

    @node(name="doubled")
    def floats(t_f: npt.NDArray[np.floating]) -> np.ndarray:
        return t_f * 2

    assert graph_of(found, floats).node("doubled") is floats


# -- dense list columns ----------------------------------------------------------------------------


def object_column(rows: list[Any]) -> np.ndarray:
    """What Ray Data hands over for a list column: a 1-D object array of per-row values."""
    column = np.empty(len(rows), dtype=object)
    column[:] = rows
    return column


def test_dense_columns_stacks_equal_length_rows() -> None:
    batch = {
        "arrays": object_column([np.array([1.0, 2.0], np.float32), np.array([3.0, 4.0])]),
        "lists": object_column([[1, 2, 3], [4, 5, 6]]),
        "ragged": object_column([np.array([1.0]), np.array([1.0, 2.0])]),
        "flat": np.array([1, 2]),
        "strings": np.array(["a", "b"], dtype=object),
        "empty": np.empty(0, dtype=object),
        "plain": [1, 2],
    }
    out = dense_columns(batch)
    assert out["arrays"].shape == (2, 2) and out["arrays"].dtype == np.float64
    assert out["lists"].tolist() == [[1, 2, 3], [4, 5, 6]] and out["lists"].dtype == np.int64
    for unchanged in ("ragged", "flat", "strings", "empty", "plain"):
        assert out[unchanged] is batch[unchanged]
    assert dense_columns(out)["arrays"] is out["arrays"]  # idempotent
    assert batch["arrays"].dtype == object  # the input is not modified


def test_metrics_receive_list_columns_dense() -> None:
    seen: dict[str, tuple[int, ...]] = {}

    def top1(scores: np.ndarray, relevance: np.ndarray) -> float:
        seen["scores"], seen["relevance"] = scores.shape, relevance.shape
        return float(np.mean(relevance[np.arange(len(scores)), scores.argmax(axis=1)]))

    validation = Validation(
        dataset="v.parquet",
        label="relevance",
        metrics=[Metric(name="top1", column="scores", fn=top1, beats="baseline")],
    )
    columns = {
        "scores": object_column([np.array([0.1, 0.9]), np.array([0.8, 0.2])]),
        "baseline": object_column([[1.0, 0.0], [1.0, 0.0]]),
        "relevance": object_column([[0, 1], [1, 0]]),
    }
    [result] = evaluate(validation, columns)
    assert seen == {"scores": (2, 2), "relevance": (2, 2)}
    assert (result.value, result.reference, result.passed) == (1.0, 0.5, True)
