"""Lookup semantics shared by every store: defaults, missing entities, dtypes, lists, timeouts."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel, ValidationError

from graphops import (
    Feature,
    FeatureLookup,
    FeatureStoreError,
    FeatureTable,
    Graph,
    GraphDefinitionError,
    RunError,
    lookup,
    node,
)
from graphops.environments import EnvironmentConfig
from graphops.features import EmbeddedStore, FeaturesConfig, feature_tables, open_store
from graphops.planner import plan
from graphops.runtime import LocalRunner

TABLE = FeatureTable(
    name="items",
    key="item_id",
    source="items.parquet",
    features={
        "score": Feature(dtype="float32", default=-1.0),
        "clicks": Feature(dtype="int64", default=0),
        "vector": Feature(dtype="float64", shape=(3,), default=0.5),
        "flag": Feature(dtype="bool", default=False),
    },
)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    pq.write_table(
        pa.table(
            {
                "item_id": [30, 10, 20],  # unsorted on purpose
                "score": [3.0, 1.0, 2.0],
                "clicks": [300, 100, 200],
                "vector": [[3.0, 3.0, 3.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]],
                "flag": [True, False, True],
            }
        ),
        tmp_path / "items.parquet",
    )
    return tmp_path


def _lookup(store: EmbeddedStore, keys: np.ndarray, **kw: object) -> dict[str, np.ndarray]:
    kw.setdefault("timeout_ms", 1000)
    return store.lookup(TABLE, list(TABLE.features), keys, **kw)  # type: ignore[arg-type]


def test_one_entity_per_row_with_declared_dtypes(source: Path) -> None:
    out = _lookup(EmbeddedStore(source), np.array([20, 10, 20]))
    assert out["score"].dtype == np.float32 and out["score"].tolist() == [2.0, 1.0, 2.0]
    assert out["clicks"].dtype == np.int64 and out["clicks"].tolist() == [200, 100, 200]
    assert out["vector"].shape == (3, 3) and out["vector"].dtype == np.float64
    assert out["flag"].dtype == np.bool_ and out["flag"].tolist() == [True, False, True]


def test_a_list_of_entities_per_row(source: Path) -> None:
    out = _lookup(EmbeddedStore(source), np.array([[10, 30], [20, 10]]))
    assert out["score"].shape == (2, 2) and out["score"].tolist() == [[1.0, 3.0], [2.0, 1.0]]
    assert out["vector"].shape == (2, 2, 3)


def test_missing_entities_get_defaults_and_are_counted(source: Path) -> None:
    store = EmbeddedStore(source)
    out = _lookup(store, np.array([[10, 99], [99, 5]]))
    assert out["score"].tolist() == [[1.0, -1.0], [-1.0, -1.0]]
    assert out["clicks"].tolist() == [[100, 0], [0, 0]]
    assert out["vector"][0, 1].tolist() == [0.5, 0.5, 0.5]
    assert store.stats.missing == {"items": 3} and store.stats.keys == {"items": 4}


def test_string_ids_of_an_integer_table(source: Path) -> None:
    out = _lookup(EmbeddedStore(source), np.array(["10", "nope"]))
    assert out["score"].tolist() == [1.0, -1.0]


def test_ragged_key_lists_are_refused_with_a_fix(source: Path) -> None:
    keys = np.empty(2, dtype=object)
    keys[:] = [[10, 20], [10]]
    with pytest.raises(RunError, match="equally long key lists") as info:
        _lookup(EmbeddedStore(source), keys, where={"node": "item_features"})
    assert info.value.node == "item_features" and "Pad every list" in info.value.fix


class _SlowStore(EmbeddedStore):
    def _fetch(self, table, keys, timeout_s):  # type: ignore[no-untyped-def]
        time.sleep(0.05)
        return super()._fetch(table, keys, timeout_s)


def test_a_slow_lookup_answers_defaults_and_counts_a_timeout(source: Path) -> None:
    store = _SlowStore(source)
    out = _lookup(store, np.array([10, 20]), timeout_ms=10)
    assert out["score"].tolist() == [-1.0, -1.0]
    assert store.stats.timeouts == {"items": 1} and store.stats.missing == {"items": 0}


def test_a_slow_lookup_can_fail_instead(source: Path) -> None:
    with pytest.raises(RunError, match="longer than 10 ms"):
        _lookup(_SlowStore(source), np.array([10]), timeout_ms=10, on_timeout="fail")


class _SlowToOpen(EmbeddedStore):
    def prepare(self, table):  # type: ignore[no-untyped-def]
        time.sleep(0.2)
        super().prepare(table)


def test_preparing_the_table_does_not_count_against_the_timeout(source: Path) -> None:
    store = _SlowToOpen(source)
    out = _lookup(store, np.array([10]), timeout_ms=100)
    assert store.stats.timeouts == {"items": 0} and out["score"].tolist() == [1.0]


def test_a_missing_source_names_the_table_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FeatureStoreError, match='feature table "items" does not exist'):
        _lookup(EmbeddedStore(tmp_path), np.array([1]))


def test_a_source_lacking_a_feature_is_refused(source: Path) -> None:
    pq.write_table(pa.table({"item_id": [1], "score": [1.0]}), source / "items.parquet")
    with pytest.raises(FeatureStoreError, match="lacks the column"):
        _lookup(EmbeddedStore(source), np.array([1]))


# -- authoring ---------------------------------------------------------------------------------


class Request(BaseModel):
    candidates: list[int]


class Response(BaseModel):
    best: float


items = lookup("items_lookup", table=TABLE, key="candidates", features=["score"], prefix="i_")


@node
def best(i_score: np.ndarray) -> np.ndarray:
    return i_score.max(axis=1)


def test_a_lookup_is_a_node_of_the_graph() -> None:
    graph = Graph(
        name="g", version="1.0.0", request=Request, response=Response, nodes=[items, best]
    )
    assert isinstance(graph.node("items_lookup"), FeatureLookup)
    assert items.inputs == ("candidates",) and items.outputs == ("i_score",)
    assert feature_tables(graph) == [TABLE]
    assert [s.name for s in plan(graph).stages] == ["items_lookup_to_best"]


def test_the_local_runner_injects_the_store(source: Path) -> None:
    graph = Graph(
        name="g", version="1.0.0", request=Request, response=Response, nodes=[items, best]
    )
    runner = LocalRunner(graph, {}, features=EmbeddedStore(source))
    out = runner.run_batch({"candidates": np.array([[10, 30], [99, 20]])})
    assert out["best"].tolist() == [3.0, 2.0]


def test_a_runner_without_a_store_says_how_to_get_one() -> None:
    graph = Graph(
        name="g", version="1.0.0", request=Request, response=Response, nodes=[items, best]
    )
    with pytest.raises(RunError, match="No feature store for lookup node"):
        LocalRunner(graph, {})


def test_a_store_error_names_the_graph_and_node_when_the_runner_starts(tmp_path: Path) -> None:
    graph = Graph(
        name="g", version="1.0.0", request=Request, response=Response, nodes=[items, best]
    )
    with pytest.raises(FeatureStoreError, match="does not exist") as info:
        LocalRunner(graph, {}, features=EmbeddedStore(tmp_path))
    assert (info.value.graph, info.value.node) == ("g", "items_lookup")
    assert info.value.file == str(tmp_path / "items.parquet")


def test_an_unknown_feature_suggests_the_closest() -> None:
    with pytest.raises(GraphDefinitionError, match='Did you mean "score"') as info:
        lookup("x", table=TABLE, key="k", features=["scor"])
    assert info.value.file == __file__


def test_tables_are_strict() -> None:
    with pytest.raises(ValidationError, match="snake_case"):
        FeatureTable(name="Bad", key="id", source="x.parquet", features={"a": Feature()})
    with pytest.raises(ValidationError, match="extra"):
        Feature(dtype="float32", unknown=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Feature(dtype="float16")  # type: ignore[arg-type]


def test_the_environment_picks_the_store(tmp_path: Path) -> None:
    assert EnvironmentConfig(name="dev").features.store == "embedded"
    config = FeaturesConfig.model_validate({"store": "redis", "redis": {"url": "redis://h:1/0"}})
    assert open_store(config, tmp_path).kind == "redis"
    assert open_store(None, tmp_path).kind == "embedded"
    with pytest.raises(ValidationError, match="no `redis:` section"):
        FeaturesConfig(store="redis")
    with pytest.raises(ValidationError, match="extra"):
        FeaturesConfig.model_validate({"store": "embedded", "feast": {}})


# -- a gate against a reference column (popularity baseline) -----------------------------------


def _mean_first(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(labels)[np.arange(len(labels)), np.argmax(predictions, 1)]))


def test_a_metric_must_beat_its_reference_column() -> None:
    from graphops import Metric, Validation
    from graphops.errors import InputDataError
    from graphops.graph import evaluate

    metric = Metric(name="hit", column="scores", fn=_mean_first, min=0.1, beats="popular")
    validation = Validation(dataset="v.parquet", label="truth", metrics=[metric])
    truth = np.array([[0, 1], [1, 0]])
    columns = {"truth": truth, "scores": np.array([[0, 1], [1, 0]]), "popular": np.eye(2)[[0, 0]]}
    (result,) = evaluate(validation, columns)
    assert (result.value, result.reference, result.passed) == (1.0, 0.5, True)
    assert result.gate == ">= 0.1 and > popular (0.5000)"
    (worse,) = evaluate(validation, columns | {"scores": np.eye(2)[[0, 0]]})
    assert worse.value == worse.reference and not worse.passed  # a tie does not beat it
    with pytest.raises(InputDataError, match='must beat the column "popular"'):
        evaluate(validation, {"truth": truth, "scores": truth})


def test_render_carries_the_store_to_the_replicas_only_when_set(tmp_path: Path) -> None:
    import datetime
    import shutil

    from graphops.controller.render import render
    from graphops.environments import Release, ReleaseEntry, write_release

    repo = tmp_path
    shutil.copytree(Path(__file__).resolve().parents[2] / "environments", repo / "environments")
    from tests.fixtures.locks import lock as made_up_lock

    entry = ReleaseEntry(
        lock=made_up_lock().model_copy(update={"models": {}, "example": None}),
        promoted_at=datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC),
    )
    write_release(repo, "dev", Release(graphs={"feed_ranking": entry}))
    render(repo, "dev").write()
    assert "features" not in (repo / "environments/dev/serve.yaml").read_text()
    env = repo / "environments/dev/environment.yaml"
    env.write_text(
        env.read_text() + "features:\n  store: redis\n  redis: {url_env: FEATURES_REDIS_URL}\n"
    )
    render(repo, "dev").write()
    serve_yaml = (repo / "environments/dev/serve.yaml").read_text()
    assert "store: redis" in serve_yaml and "url_env: FEATURES_REDIS_URL" in serve_yaml
