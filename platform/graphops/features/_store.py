"""The lookup semantics every store shares: unique keys, defaults, counting, dtypes, timeouts.

A backend only answers "which of these unique keys exist, and their packed records"
(`FeatureStore._fetch`); everything a graph can observe (default filling, shapes, dtypes,
missing/timeout counters) lives here, so the embedded store and Redis answer identically.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from graphops.errors import FeatureStoreError, RunError
from graphops.graph import FeatureTable


class FeatureTimeoutError(Exception):
    """A backend took longer than the lookup's timeout (handled by `FeatureStore.lookup`)."""


@dataclass
class LookupStats:
    """What lookups did, per table: calls, keys asked for, keys missing, batches timed out."""

    calls: dict[str, int] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    timeouts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, table: str, **counts: float) -> None:
        """Add ``counts`` (calls=, keys=, missing=, timeouts=, seconds=) for ``table``."""
        for name, value in counts.items():
            bucket = getattr(self, name)
            bucket[table] = bucket.get(table, 0) + value


class FeatureStore:
    """Base class of the stores: vectorized lookups over whole batches.

    Args:
        root: Folder that relative table sources are resolved against (the graph package).
    """

    kind = "base"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.stats = LookupStats()
        self._lock = threading.Lock()

    def prepare(self, table: FeatureTable) -> None:
        """Make ``table`` ready (load it, check its layout) so no lookup's timeout pays for it."""

    def _fetch(
        self, table: FeatureTable, keys: np.ndarray, timeout_s: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, records of ``table.record_dtype()``) for unique ``keys``; may time out."""
        raise NotImplementedError

    def lookup(
        self,
        table: FeatureTable,
        names: Sequence[str],
        keys: np.ndarray,
        *,
        timeout_ms: float,
        on_timeout: str = "default",
        where: Mapping[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """Features ``names`` of ``table`` for ``keys`` of shape ``S``: columns of ``S + shape``.

        Missing keys get each feature's default (and are counted); a fetch slower than
        ``timeout_ms`` gives defaults for every key (counted) unless ``on_timeout="fail"``.
        """
        where = dict(where or {})
        self.prepare(table)
        keys = _keys(keys, table, where)
        flat = keys.reshape(-1)
        unique, inverse = np.unique(flat, return_inverse=True)
        started = time.perf_counter()
        timed_out = False
        try:
            found, records = self._fetch(table, unique, timeout_ms / 1000)
            if time.perf_counter() - started > timeout_ms / 1000:  # a late answer counts as none
                raise FeatureTimeoutError
        except FeatureTimeoutError:
            if on_timeout == "fail":
                raise RunError(
                    f'Looking up {len(unique)} "{table.name}" entities took longer than '
                    f"{timeout_ms:g} ms.",
                    fix='Raise timeout_ms, make the store faster, or use on_timeout="default".',
                    **where,
                ) from None
            timed_out = True
            found = np.zeros(len(unique), dtype=bool)
            records = np.zeros(len(unique), dtype=table.record_dtype())
        seconds = time.perf_counter() - started
        missing_unique = ~found
        missing = int(missing_unique[inverse].sum()) if not timed_out else 0
        with self._lock:
            self.stats.add(
                table.name,
                calls=1,
                keys=len(flat),
                missing=missing,
                timeouts=int(timed_out),
                seconds=seconds,
            )
        if missing_unique.any():  # defaults into a private copy (fetched records may be shared)
            records = records.copy()
            for name in names:
                records[name][missing_unique] = table.features[name].default
        rows = records[inverse]  # one gather of whole records, then a contiguous view per feature
        return {
            name: np.ascontiguousarray(rows[name], dtype=table.features[name].dtype).reshape(
                keys.shape + table.features[name].shape
            )
            for name in names
        }

    def close(self) -> None:
        """Release connections (nothing for in-process stores)."""

    def describe(self) -> str:
        """One line saying which store this is, for CLI output."""
        return self.kind


def _keys(keys: np.ndarray, table: FeatureTable, where: Mapping[str, Any]) -> np.ndarray:
    """Entity ids as a dense int64 or str array; ragged lists are refused with a fix."""
    if keys.dtype == object:
        try:
            keys = np.asarray(keys.tolist())
        except ValueError:
            keys = keys  # ragged: fall through to the error below
        if keys.dtype == object:
            raise RunError(
                f'The "{table.name}" keys of this batch are lists of different lengths (or mix '
                "types); a batch must hold equally long key lists.",
                fix="Pad every list to the same length with an id that does not exist (it gets "
                "the defaults), or send requests of equal length.",
                **where,
            )
    if keys.dtype.kind in "iu":
        return keys.astype(np.int64, copy=False)
    if keys.dtype.kind in "US":
        return keys.astype(str)
    raise RunError(
        f'Got keys of dtype {keys.dtype} for table "{table.name}". Entity ids are integers or '
        "strings.",
        fix="Declare the key field as int or str in the request schema.",
        **where,
    )


def read_table(table: FeatureTable, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(keys, records) of ``table`` from its Parquet source, sorted by key, dtypes as declared."""
    path = table.source if table.source.is_absolute() else root / table.source
    if not path.is_file():
        raise FeatureStoreError(
            f'The source of feature table "{table.name}" does not exist: {path}.',
            fix="Create it (the graph's train.py or data.py writes it), or fix `source=`.",
            file=path,
        )
    data = pq.read_table(path)
    wanted = [table.key, *table.features]
    absent = [c for c in wanted if c not in data.column_names]
    if absent:
        raise FeatureStoreError(
            f'The source of feature table "{table.name}" lacks the column(s) {", ".join(absent)} '
            f"(it has {', '.join(data.column_names)}).",
            fix="Write every declared feature and the key into the Parquet file.",
            file=path,
        )
    keys = data.column(table.key).to_numpy()
    keys = keys.astype(np.int64) if keys.dtype.kind in "iu" else keys.astype(str)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    if len(keys) > 1 and (keys[1:] == keys[:-1]).any():
        duplicate = keys[1:][keys[1:] == keys[:-1]][0]
        raise FeatureStoreError(
            f'Feature table "{table.name}" holds key {duplicate!r} more than once.',
            fix="Keep one row per entity in the source.",
            file=path,
        )
    records = np.zeros(len(keys), dtype=table.record_dtype())
    for name, feature in table.features.items():
        column = data.column(name).combine_chunks()
        if feature.shape:
            values = np.stack(column.to_numpy(zero_copy_only=False)) if len(column) else None
            expected = (len(keys), *feature.shape)
            if values is not None and values.shape != expected:
                raise FeatureStoreError(
                    f'Feature "{name}" of table "{table.name}" has shape {values.shape[1:]} in '
                    f"the source; it is declared {feature.shape}.",
                    fix="Fix the declaration or the data.",
                    file=path,
                )
        else:
            values = column.to_numpy(zero_copy_only=False)
        if values is not None:
            records[name] = np.asarray(values, dtype=feature.dtype)[order]
    return keys, records
