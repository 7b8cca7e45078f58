"""Feature stores: the embedded Parquet store and Redis, behind one lookup semantics.

Graph code declares lookups (`graphops.lookup`); the environment's `features:` section
(`FeaturesConfig`) picks the store, and the runtimes open it with `open_store`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from graphops.errors import FeatureStoreError
from graphops.features._config import FeaturesConfig, RedisConfig
from graphops.features._embedded import EmbeddedStore
from graphops.features._redis import RedisStore, load_tables
from graphops.features._server import local_redis, redis_server_binary
from graphops.features._store import (
    FeatureStore,
    LookupStats,
    read_table,
)
from graphops.graph import FeatureLookup, FeatureTable, Graph


def open_store(config: FeaturesConfig | None, root: Path) -> FeatureStore:
    """The store ``config`` names, resolving table sources against ``root`` (the graph package)."""
    config = config or FeaturesConfig()
    if config.store == "redis":
        assert config.redis is not None  # FeaturesConfig checks it
        return RedisStore(root, config.redis)
    return EmbeddedStore(root)


def feature_tables(graph: Graph) -> list[FeatureTable]:
    """The tables a graph's lookup nodes read, each once, in node order."""
    seen: dict[str, FeatureTable] = {}
    for node in graph.nodes:
        if isinstance(node, FeatureLookup):
            seen.setdefault(node.table.name, node.table)
    return list(seen.values())


def uses_features(nodes: Iterable[object]) -> bool:
    """Whether any of ``nodes`` is a feature lookup."""
    return any(isinstance(n, FeatureLookup) for n in nodes)


__all__ = [
    "EmbeddedStore",
    "FeatureStore",
    "FeatureStoreError",
    "FeaturesConfig",
    "LookupStats",
    "RedisConfig",
    "RedisStore",
    "feature_tables",
    "load_tables",
    "local_redis",
    "open_store",
    "read_table",
    "redis_server_binary",
    "uses_features",
]
