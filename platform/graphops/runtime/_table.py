"""Tables in and out of the runtimes: files <-> rows <-> column batches, checked by the schemas."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, TypeAdapter, ValidationError

from graphops.errors import InputDataError
from graphops.graph import Batch

FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
_MAX_REPORTED = 5


def _format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputDataError(
            f'Got "{path.name}": unknown file type "{path.suffix}".',
            fix="Use Parquet (.parquet) or JSON lines (.jsonl).",
            file=path,
        )
    return fmt


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Read a Parquet or JSON-lines file as a list of row dicts."""
    fmt = _format(path)
    if not path.is_file():
        raise InputDataError(f"Input file {path} does not exist.", fix="Check the path.", file=path)
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputDataError(
                f"Line {number} is not valid JSON: {exc.msg}.",
                fix="Write one JSON object per line.",
                file=path,
                line=number,
            ) from exc
        if not isinstance(row, dict):
            raise InputDataError(
                f"Line {number} holds a {type(row).__name__}, not an object.",
                fix='Write one JSON object per line, e.g. {"pixels": [...]}.',
                file=path,
                line=number,
            )
        rows.append(row)
    return rows


def write_rows(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Write rows as Parquet or JSON lines, chosen by the file suffix."""
    fmt = _format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(list(rows)), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _explain(exc: ValidationError, what: str) -> str:
    shown = []
    for err in exc.errors()[:_MAX_REPORTED]:
        index, *field = err["loc"]
        where = ".".join(map(str, field)) or "(row)"
        shown.append(
            f"row {int(index) + 1}, field {where}: {err['msg']} (got {err.get('input')!r:.60})"
        )
    more = exc.error_count() - len(shown)
    return (
        f"{exc.error_count()} {what} error(s): "
        + "; ".join(shown)
        + (f"; and {more} more" if more else "")
    )


def to_columns(
    rows: Sequence[Mapping[str, Any]], schema: type[BaseModel], *, source: str = "input"
) -> tuple[Batch, Batch]:
    """Validate rows against ``schema``; return (schema columns, other columns passed through)."""
    fields = list(schema.model_fields)
    try:
        # ``schema`` is the graph's request class, known only at run time.
        models: list[BaseModel] = TypeAdapter(list[schema]).validate_python(  # type: ignore[valid-type]
            [{f: r[f] for f in fields if f in r} for r in rows]
        )
    except ValidationError as exc:
        raise InputDataError(
            f"{source} does not match the request schema {schema.__name__}: {_explain(exc, 'schema')}.",
            fix=f"Each row needs the fields {', '.join(fields)} as the schema describes.",
        ) from exc
    dumped = [m.model_dump() for m in models]
    columns = {f: to_array([d[f] for d in dumped]) for f in fields}
    extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in fields]
    passthrough = {k: to_array([r.get(k) for r in rows]) for k in extra}
    return columns, passthrough


def to_rows(columns: Mapping[str, np.ndarray], fields: Sequence[str]) -> list[dict[str, Any]]:
    """Column batch -> list of row dicts (Python natives) with ``fields``."""
    lists = {f: np.asarray(columns[f]).tolist() for f in fields}
    n = len(next(iter(lists.values()))) if lists else 0
    return [{f: lists[f][i] for f in fields} for i in range(n)]


def to_array(values: list[Any]) -> np.ndarray:
    """A numpy column; rows of equal-length lists become a 2-D array, ragged rows an object array."""
    try:
        return np.asarray(values)
    except ValueError:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
