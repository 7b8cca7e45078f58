"""The embedded store: each table's Parquet source held in memory, looked up by binary search."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from graphops.features._store import FeatureStore, read_table
from graphops.graph import FeatureTable


class EmbeddedStore(FeatureStore):
    """In-process lookups from the tables' Parquet sources (loaded once per table, on first use).

    What local runs, CI, the demo and offline (Ray Data) runs use: no server, and the same data
    Redis is loaded from, so every runtime answers alike.
    """

    kind = "embedded"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._tables: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._loading = threading.Lock()

    def prepare(self, table: FeatureTable) -> None:
        """Read the table's source now (once)."""
        self.table(table)

    def table(self, table: FeatureTable) -> tuple[np.ndarray, np.ndarray]:
        """(sorted keys, records) of ``table``, read from its source the first time."""
        loaded = self._tables.get(table.name)
        if loaded is None:
            with self._loading:
                loaded = self._tables.get(table.name)
                if loaded is None:
                    loaded = self._tables[table.name] = read_table(table, self.root)
        return loaded

    def _fetch(
        self, table: FeatureTable, keys: np.ndarray, timeout_s: float
    ) -> tuple[np.ndarray, np.ndarray]:
        known, records = self.table(table)
        if len(known) == 0:
            return np.zeros(len(keys), dtype=bool), np.zeros(len(keys), dtype=records.dtype)
        if known.dtype.kind != keys.dtype.kind:  # int ids asked as str or the reverse
            keys = keys.astype(known.dtype) if known.dtype.kind == "U" else _as_int(keys)
        index = np.clip(np.searchsorted(known, keys), 0, len(known) - 1)
        found = known[index] == keys
        return found, records[index]

    def describe(self) -> str:
        """Where it reads from."""
        return f"embedded (Parquet sources under {self.root})"


def _as_int(keys: np.ndarray) -> np.ndarray:
    """String ids that are integers, as int64; others become -1 (never a key: reported missing)."""
    out = np.full(len(keys), -1, dtype=np.int64)
    for i, key in enumerate(keys):
        if str(key).lstrip("-").isdigit():
            out[i] = int(key)
    return out
