"""Helpers of the tabular formats: flavor data files, thread counts and skops' safe loading.

skops is imported when a skops file is checked or loaded, not with this module.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from graphops.errors import RegistryError, Where
from graphops.graph import ModelNode
from graphops.models._format import Artifacts

SKOPS = "skops"
SCHEMA_FILE = "schema.json"
TRUSTABLE = ("sklearn.", "numpy.", "scipy.", "xgboost.", "lightgbm.", "collections.OrderedDict")
"""Types a model's own ``skops_trusted_types`` may add to skops' defaults (by name prefix).

MLmodel's list is written by whoever logged the model, so it is honoured only for types of the
libraries the tabular formats install; any other type (a team's own class, ``builtins.eval``...)
needs the platform team's opt-in.
"""
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def threads_for(node: ModelNode) -> int:
    """Threads one replica uses: its node's CPUs rounded up, at least 1 (replicas share cores)."""
    return max(1, math.ceil(node.resources.cpus))


def flavor_file(artifacts: Artifacts, flavor: str, key: str = "data") -> Path:
    """The file named by ``key`` in ``flavor``'s MLmodel section (relative to the model root)."""
    data = artifacts.flavors.get(flavor, {}).get(key)
    return artifacts.directory / str(data or "")


def missing_file(artifacts: Artifacts, flavor: str, path: Path, where: Where) -> RegistryError:
    """The error for an MLmodel whose flavor names a data file the artifacts do not hold."""
    return RegistryError(
        f"{artifacts.uri}: MLmodel's {flavor} flavor names data file {path.name!r}, which is not "
        "among the model's files.",
        fix=f"Log the model again with mlflow.{flavor}.log_model (its files are incomplete).",
        **where,
    )


def serialization(artifacts: Artifacts, flavor: str) -> str:
    """The flavor's ``serialization_format`` (MLflow's old saves, without one, are pickles)."""
    return str(artifacts.flavors.get(flavor, {}).get("serialization_format") or "pickle")


def refused_types(path: Path, declared: Iterable[str] | None) -> list[str]:
    """Types in the skops file ``path`` outside skops' defaults and not honourably declared."""
    import skops.io

    honoured = {str(t) for t in declared or () if str(t).startswith(TRUSTABLE)}
    return [t for t in skops.io.get_untrusted_types(file=path) if t not in honoured]


def skops_refusal(artifacts: Artifacts, flavor: str, path: Path) -> str | None:
    """What `ModelFormat.pickled` reports for a skops file: its untrusted types, or None."""
    if not path.is_file():
        return None  # load() names the missing file
    declared = artifacts.flavors.get(flavor, {}).get("skops_trusted_types")
    untrusted = refused_types(path, declared)
    if untrusted:
        return f"types skops does not trust ({', '.join(untrusted)}) from {path.name}"
    return None


def load_skops(artifacts: Artifacts, path: Path, where: Where) -> Any:
    """``skops.io.load`` trusting the types in the file.

    Reached only when `skops_refusal` found none it refuses, or the platform team allowed the model.
    """
    import skops.io

    try:
        return skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    except Exception as exc:  # skops raises TypeError/ValueError/KeyError on files it can't read
        raise RegistryError(
            f"{artifacts.uri}: skops cannot load {path.name}: {exc}",
            fix="Log the model again with serialization_format='skops' from library versions "
            "no newer than the ones installed here.",
            **where,
        ) from exc


def normalise_skops(path: Path) -> None:
    """Rewrite the skops zip at ``path`` so equal estimators give equal bytes.

    skops names each array file and each object's ``__id__`` by Python's ``id()``, and stamps
    every entry with the current time: all change from one process to the next. Ids and files
    are renumbered in the order the schema first names them; entries get a fixed timestamp.
    """
    with zipfile.ZipFile(path) as zf:
        entries = {info.filename: zf.read(info) for info in zf.infolist()}
    schema = json.loads(entries.pop(SCHEMA_FILE))
    ids: dict[int, int] = {}
    files: dict[str, str] = {}

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if key == "__id__" and isinstance(item, int):
                    out[key] = ids.setdefault(item, len(ids))
                elif isinstance(item, str) and item in entries:
                    name = f"{len(files):06d}{Path(item).suffix}"
                    out[key] = files.setdefault(item, name)
                else:
                    out[key] = walk(item)
            return out
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    renamed = walk(schema)
    unnamed = sorted(set(entries) - set(files))  # files the schema does not name: kept as is
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        payload = [(SCHEMA_FILE, json.dumps(renamed, indent=2).encode())]
        payload += [(new, entries[old]) for old, new in files.items()]
        payload += [(name, entries[name]) for name in unnamed]
        for name, data in payload:
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    path.write_bytes(buffer.getvalue())
