"""Name and version checks match the whole string: a trailing newline never slips past ``$``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from graphops import (
    Feature,
    FeatureTable,
    Graph,
    GraphDefinitionError,
    InvalidModelURIError,
    InvalidVersionError,
    Metric,
    ScaffoldError,
    node,
)
from graphops.graph._node import ModelURI
from graphops.scaffold import scaffold
from graphops.scaffold._scaffold import check_name
from tests.fixtures.parts import TotalResponse, XRequest, total


def test_scaffold_refuses_a_name_with_a_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "graphs").mkdir()

    with pytest.raises(ScaffoldError, match=r'Got "abc\\n" for the graph name') as err:
        scaffold(tmp_path, "abc\n", "minimal")
    assert err.value.fix == "Try `graphops new abc`."
    assert list((tmp_path / "graphs").iterdir()) == []
    check_name("abc")  # the name without the newline is fine


def test_graph_name_and_version_with_a_trailing_newline_are_refused() -> None:
    def make(name: str, version: str) -> Graph:
        return Graph(
            name=name, version=version, request=XRequest, response=TotalResponse, nodes=[total]
        )

    assert make("g", "1.0.0").name == "g"
    with pytest.raises(GraphDefinitionError, match="lowercase snake_case"):
        make("g\n", "1.0.0")
    with pytest.raises(InvalidVersionError, match=r"MAJOR\.MINOR\.PATCH"):
        make("g", "1.0.0\n")


def test_node_name_with_a_trailing_newline_is_refused() -> None:
    def f(x: np.ndarray) -> np.ndarray:
        return x

    with pytest.raises(GraphDefinitionError, match="as a node name"):
        node(f, name="f\n")


def test_model_uri_with_a_trailing_newline_is_refused() -> None:
    assert ModelURI.parse("models:/digits@champion") == ModelURI("digits", alias="champion")
    with pytest.raises(InvalidModelURIError, match="for the model URI"):
        ModelURI.parse("models:/digits@champion\n")
    with pytest.raises(InvalidModelURIError, match="for the model URI"):
        ModelURI.parse("models:/digits/3\n")


@pytest.mark.parametrize("field", ["name", "key"])
def test_feature_table_names_with_a_trailing_newline_are_refused(field: str) -> None:
    args = {"name": "t", "key": "id", "source": "t.parquet", "features": {"f": Feature()}}
    with pytest.raises(ValidationError, match="must be lowercase snake_case"):
        FeatureTable(**(args | {field: args[field] + "\n"}))
    with pytest.raises(ValidationError, match="must be lowercase snake_case"):
        FeatureTable(**(args | {"features": {"f\n": Feature()}}))


def test_metric_name_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ValidationError, match="Metric names are recorded in MLflow"):
        Metric(name="accuracy\n", column="c")
