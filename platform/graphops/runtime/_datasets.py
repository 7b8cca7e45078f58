"""Datasets in and out of an offline run: read by file type (Parquet by the fast reader), written.

Write tasks reserve no CPU (see `graphops.runtime.offline.IO_CPUS`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ray
import ray.data

from graphops.errors import InputDataError
from graphops.runtime._table import FORMATS


def read_dataset(path: Path, remote: dict[str, Any] | None = None) -> ray.data.Dataset:
    """Open Parquet, JSON lines or CSV (a file or a folder of them) as a Ray dataset.

    ``remote``: extra arguments of the read tasks (a ``label_selector``: where they may run).
    """
    remote = remote or {}
    suffix = (next(iter(sorted(path.iterdir())), path) if path.is_dir() else path).suffix.lower()
    if not path.exists():
        raise InputDataError(f"Input {path} does not exist.", fix="Check the path.", file=path)
    if suffix == ".csv":
        return ray.data.read_csv(str(path), ray_remote_args=remote)
    kind = FORMATS.get(suffix)
    if kind == "parquet":
        return _read_parquet(path, remote)
    if kind == "jsonl":
        return ray.data.read_json(str(path), lines=True, ray_remote_args=remote)
    raise InputDataError(
        f'Got "{path.name}": unknown file type "{suffix}".',
        fix="Use Parquet (.parquet), JSON lines (.jsonl) or CSV (.csv).",
        file=path,
    )


def _read_parquet(path: Path, remote: dict[str, Any]) -> ray.data.Dataset:
    """Parquet through Ray Data's V1 datasource unless ``RAY_DATA_USE_DATASOURCE_V2`` is set.

    On Ray 2.60 the V2 path starts a pool of footer-reading actors: 6.6-9 s for 1,000 rows against
    0.5-1.4 s with V1 (docs/performance.md), for the same blocks.
    """
    context = ray.data.DataContext.get_current()
    before = context.use_datasource_v2
    if "RAY_DATA_USE_DATASOURCE_V2" not in os.environ:
        context.use_datasource_v2 = False
    try:
        return ray.data.read_parquet(str(path), ray_remote_args=remote)
    finally:
        context.use_datasource_v2 = before


def check_output(output: Path) -> str:
    """The writer for ``output``'s suffix; raise before any work when it is unknown."""
    suffix = output.suffix.lower()
    kind = "csv" if suffix == ".csv" else FORMATS.get(suffix)
    if kind is None:
        raise InputDataError(
            f'Got "{output.name}" for the output: unknown file type "{suffix}".',
            fix="End the output folder name in .parquet, .jsonl or .csv.",
            file=output,
        )
    return kind


def write_dataset(
    dataset: ray.data.Dataset, output: Path, remote: dict[str, Any] | None = None
) -> None:
    """Write the result in the format ``output``'s suffix names; the write tasks reserve no CPU.

    ``remote``: extra arguments of the write tasks (a ``label_selector``: where they may run).
    """
    kind = check_output(output)
    io: dict[str, Any] = {"num_cpus": 0, **(remote or {})}
    if kind == "csv":
        dataset.write_csv(str(output), ray_remote_args=io)
    elif kind == "parquet":
        dataset.write_parquet(str(output), ray_remote_args=io)
    else:
        dataset.write_json(str(output), ray_remote_args=io)
