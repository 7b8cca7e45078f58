"""The Redis store: one key per entity holding its packed feature record; MGET per batch.

Keys are ``<prefix>:<table>:<id>``; each value is the entity's features packed as the table's
little-endian numpy record (``FeatureTable.record_dtype``), so a batch of 50 entities is one MGET
and one ``np.frombuffer``. ``<prefix>:<table>:__schema__`` holds the record layout written by the
loader; a store refuses a table whose layout differs from the graph's declaration.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from graphops.errors import FeatureStoreError
from graphops.features._config import RedisConfig
from graphops.features._store import FeatureStore, FeatureTimeoutError, read_table
from graphops.graph import FeatureTable

SCHEMA_KEY = "__schema__"
LOAD_CHUNK = 2000
"""Entities written per pipeline round trip by `load_tables`."""


def _schema(table: FeatureTable) -> str:
    """The record layout as canonical JSON (what the loader wrote must equal what a graph reads)."""
    return json.dumps({"key": table.key, "record": table.record_dtype().descr}, sort_keys=True)


def _client(config: RedisConfig, timeout_s: float | None, *, retries: bool = False) -> Any:
    """A client; lookups never retry (a retry cannot fit in their timeout), the loader does."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    extra = {} if retries else {"retry": Retry(NoBackoff(), 0)}
    return redis.Redis.from_url(
        config.resolved_url(),
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s or 5,
        **extra,
    )


def _unreachable(config: RedisConfig, exc: Exception) -> FeatureStoreError:
    shown = (config.url_env and f"${config.url_env}") or config.url
    return FeatureStoreError(
        f"Redis at {shown} cannot be reached: {type(exc).__name__}: {exc}",
        fix="Start it, or fix features.redis.url in the environment's environment.yaml.",
    )


class RedisStore(FeatureStore):
    """Lookups from a Redis server loaded by `load_tables` (``graphops features load``)."""

    kind = "redis"

    def __init__(self, root: Path, config: RedisConfig) -> None:
        super().__init__(root)
        self.config = config
        self._clients: dict[float, Any] = {}  # one connection pool per socket timeout
        self._checked: set[str] = set()

    def _client(self, timeout_s: float) -> Any:
        client = self._clients.get(timeout_s)
        if client is None:
            client = self._clients[timeout_s] = _client(self.config, timeout_s)
        return client

    def _key(self, table: FeatureTable, key: Any) -> str:
        return f"{self.config.key_prefix}:{table.name}:{key}"

    def prepare(self, table: FeatureTable) -> None:
        """Check once that Redis holds ``table`` with the declared layout."""
        if table.name not in self._checked:
            self._check(table)

    def _check(self, table: FeatureTable) -> None:
        """Refuse a table Redis holds with another layout, or does not hold at all."""
        import redis

        try:
            stored = _client(self.config, 5).get(self._key(table, SCHEMA_KEY))
        except redis.exceptions.RedisError as exc:
            raise _unreachable(self.config, exc) from exc
        fix = "Load it: `graphops features load --env <env>` (reads the table's Parquet source)."
        if stored is None:
            raise FeatureStoreError(
                f'Redis holds no feature table "{table.name}" under prefix '
                f'"{self.config.key_prefix}".',
                fix=fix,
            )
        if stored.decode() != _schema(table):
            raise FeatureStoreError(
                f'Redis holds feature table "{table.name}" with another layout than the graph '
                f"declares ({stored.decode()[:200]} vs {_schema(table)[:200]}).",
                fix=fix,
            )
        self._checked.add(table.name)

    def _fetch(
        self, table: FeatureTable, keys: np.ndarray, timeout_s: float
    ) -> tuple[np.ndarray, np.ndarray]:
        import redis

        dtype = table.record_dtype()
        try:
            values = self._client(timeout_s).mget([self._key(table, k) for k in keys.tolist()])
        except redis.exceptions.TimeoutError as exc:
            raise FeatureTimeoutError from exc
        except redis.exceptions.RedisError as exc:
            raise _unreachable(self.config, exc) from exc
        found = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
        blank = bytes(dtype.itemsize)
        packed = b"".join(blank if v is None else v for v in values)
        if len(packed) != dtype.itemsize * len(values):
            raise FeatureStoreError(
                f'Redis values of feature table "{table.name}" have the wrong size for its layout.',
                fix="Reload it: `graphops features load --env <env>`.",
            )
        return found, np.frombuffer(packed, dtype=dtype)

    def close(self) -> None:
        """Close every connection pool."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def describe(self) -> str:
        """Where it reads from."""
        shown = (self.config.url_env and f"${self.config.url_env}") or self.config.url
        return f"redis ({shown}, prefix {self.config.key_prefix})"


def load_tables(config: RedisConfig, root: Path, tables: Iterable[FeatureTable]) -> dict[str, int]:
    """Write each table's Parquet source into Redis (entities, then the layout); returns counts.

    Re-loading overwrites every entity of the source; entities no longer in the source keep
    their old value until deleted (their keys are ``<prefix>:<table>:<id>``).
    """
    import redis

    client = _client(config, 30, retries=True)
    counts = {}
    try:
        for table in tables:
            keys, records = read_table(table, root)
            prefix = f"{config.key_prefix}:{table.name}:"
            raw = records.tobytes()
            size = records.dtype.itemsize
            ids = keys.tolist()
            for start in range(0, len(ids), LOAD_CHUNK):
                pipe = client.pipeline(transaction=False)
                for i in range(start, min(start + LOAD_CHUNK, len(ids))):
                    pipe.set(f"{prefix}{ids[i]}", raw[i * size : (i + 1) * size])
                pipe.execute()
            client.set(f"{prefix}{SCHEMA_KEY}", _schema(table))
            counts[table.name] = len(ids)
    except redis.exceptions.RedisError as exc:
        raise _unreachable(config, exc) from exc
    finally:
        client.close()
    return counts
