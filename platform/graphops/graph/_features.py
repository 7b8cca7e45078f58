"""Feature lookup nodes: named features fetched by entity key from a store chosen per environment.

The graph declares *what* it looks up (a `FeatureTable` of typed features with defaults, the
request column holding the keys, a timeout); *where* the features live (the embedded Parquet
store, Redis) is the environment's choice and is injected by the runtime. Nothing here imports a
store client.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, cast

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator, model_validator

from graphops._models import FrozenModel
from graphops.errors import GraphDefinitionError, Where, did_you_mean
from graphops.graph._node import Node, NodeSignature, build_node
from graphops.graph._settings import Resources, Scaling

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class Feature(FrozenModel):
    """One named feature of a table: its dtype, shape and the default for a missing entity."""

    dtype: Annotated[
        Literal["float32", "float64", "int32", "int64", "bool"],
        Field(description="numpy dtype of the values."),
    ] = "float32"
    shape: Annotated[
        tuple[int, ...],
        Field(description="Shape of one value: () for a scalar, (16,) for a 16-vector."),
    ] = ()
    default: Annotated[
        float | int | bool,
        Field(description="Value used (for every element) when the entity is missing."),
    ] = 0

    @field_validator("shape")
    @classmethod
    def _positive(cls, shape: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < 1 for d in shape):
            raise ValueError(f"every dimension of shape must be at least 1, got {shape}")
        return shape


class FeatureTable(FrozenModel):
    """Features of one entity type (members, items...), keyed by one id column.

    Args:
        name: Table name; the Redis key prefix and the name in errors.
        key: Column of the source holding the entity id (int or str).
        source: Parquet file with ``key`` plus one column per feature, relative to the graph
            package (what the embedded store serves, offline runs read, and Redis is loaded from).
        features: Feature name -> `Feature` (dtype, shape, default).
    """

    name: Annotated[str, Field(description="Table name, lowercase snake_case.")]
    key: Annotated[str, Field(description="Entity id column of the source.")]
    source: Annotated[Path, Field(description="Parquet source, relative to the graph package.")]
    features: Annotated[
        dict[str, Feature], Field(description="Feature name -> dtype, shape and default.")
    ]

    @model_validator(mode="after")
    def _names(self) -> FeatureTable:
        for label, value in [
            ("name", self.name),
            ("key", self.key),
            *[("feature", f) for f in self.features],
        ]:
            if not _NAME.fullmatch(value):
                raise ValueError(f'{label} "{value}" must be lowercase snake_case')
        if not self.features:
            raise ValueError(f'table "{self.name}" declares no features')
        if self.key in self.features:
            raise ValueError(f'the key "{self.key}" cannot also be a feature')
        return self

    def record_dtype(self, names: Sequence[str] | None = None) -> np.dtype:
        """The packed record of ``names`` (default: all features, in declared order)."""
        chosen = list(names) if names is not None else list(self.features)
        return np.dtype(
            [(n, self.features[n].dtype, self.features[n].shape) for n in chosen]
        ).newbyteorder("<")


class FeatureSource(Protocol):
    """What a lookup node needs from a store (see `graphops.features.FeatureStore`)."""

    def lookup(
        self,
        table: FeatureTable,
        names: Sequence[str],
        keys: np.ndarray,
        *,
        timeout_ms: float,
        on_timeout: str,
        where: Mapping[str, Any],
    ) -> dict[str, np.ndarray]:
        """Features ``names`` of ``table`` for ``keys`` (any shape), one column per feature."""
        ...


def _no_store(**_: Any) -> Any:
    raise GraphDefinitionError(
        "A feature lookup node has no function to call directly.",
        fix="Run it through a runner with a feature store (graphops run/serve/batch).",
    )


@dataclass(frozen=True, eq=False, repr=False)
class FeatureLookup(Node):
    """A node fetching features for the entity ids in one column; the store is injected.

    Create it with `lookup`. A 1-D key column (one entity per row) gives columns of shape
    ``(rows, *feature_shape)``; a 2-D one (a list of entities per row, e.g. candidate items)
    gives ``(rows, entities, *feature_shape)``.
    """

    table: FeatureTable = field(
        default_factory=lambda: FeatureTable(
            name="unset", key="id", source=Path("unset.parquet"), features={"x": Feature()}
        )
    )
    key: str = ""
    features: tuple[str, ...] = ()
    prefix: str = ""
    timeout_ms: float = 50.0
    on_timeout: Literal["default", "fail"] = "default"

    def run(self, batch: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        """Look the batch's keys up in the injected ``store``; one column per feature."""
        store: FeatureSource | None = extra.get("store")
        if store is None:
            raise GraphDefinitionError(
                "No feature store was given to this lookup.",
                fix="Run the graph through graphops (run_local, run_offline, serve), which "
                "opens the environment's store.",
                node=self.name,
            )
        found = store.lookup(
            self.table,
            self.features,
            np.asarray(batch[self.key]),
            timeout_ms=self.timeout_ms,
            on_timeout=self.on_timeout,
            where={"node": self.name, "file": self.file, "line": self.line},
        )
        return {f"{self.prefix}{name}": found[name] for name in self.features}


def lookup(
    name: str,
    *,
    table: FeatureTable,
    key: str,
    features: Sequence[str] | None = None,
    prefix: str = "",
    timeout_ms: float = 50.0,
    on_timeout: Literal["default", "fail"] = "default",
    resources: Resources | None = None,
    scaling: Scaling | None = None,
    stage: str | None = None,
) -> FeatureLookup:
    """Declare a feature lookup node.

    Its output columns are ``prefix + feature`` for each feature; its one input is ``key``.
    Missing entities get each feature's declared default and are counted by the store, never
    raised. A lookup slower than ``timeout_ms`` answers defaults for the whole batch (counted as a
    timeout) unless ``on_timeout="fail"``.

    Args:
        name: Node name, lowercase snake_case.
        table: The `FeatureTable` to read.
        key: Request (or node output) column holding entity ids: one per row, or a list per row.
        features: Features to fetch (default: all of the table's, in declared order).
        prefix: Prepended to each feature name to name its output column.
        timeout_ms: Longest the store may take for one batch.
        on_timeout: ``"default"``: answer defaults and count it; ``"fail"``: fail the request.
        resources: What a replica reserves (default 1 CPU; lookups are light: use a fraction).
        scaling: Replicas of the node's stage.
        stage: Explicit stage name (see `node`).

    Returns:
        A `FeatureLookup` node.

    Example:
        >>> items = lookup("item_features", table=ITEMS, key="candidate_ids", prefix="item_")
    """
    caller = sys._getframe(1)  # where the lookup is declared, for errors
    file, line = caller.f_code.co_filename, caller.f_lineno
    where: Where = {"node": name, "file": file, "line": line}
    chosen = tuple(features) if features is not None else tuple(table.features)
    for feature in chosen:
        if feature not in table.features:
            raise GraphDefinitionError(
                f'Table "{table.name}" has no feature "{feature}".'
                + did_you_mean(feature, list(table.features)),
                fix=f"Choose among: {', '.join(table.features)}.",
                **where,
            )
    if not chosen or len(set(chosen)) != len(chosen):
        raise GraphDefinitionError(
            f"Got features={list(chosen)}: name each feature once, at least one.",
            fix="Pass distinct feature names, or omit features= for all of them.",
            **where,
        )
    if timeout_ms <= 0:
        raise GraphDefinitionError(
            f"Got {timeout_ms} for timeout_ms. It must be positive.",
            fix="Use e.g. timeout_ms=20.",
            **where,
        )
    array = cast(Any, npt.NDArray)  # subscripted at run time with each feature's dtype
    outputs = {f"{prefix}{f}": array[np.dtype(table.features[f].dtype).type] for f in chosen}
    return build_node(
        FeatureLookup,
        _no_store,
        name=name,
        file=file,
        line=line,
        resources=resources,
        scaling=scaling,
        stage=stage,
        # Keys may arrive as any array (one id or a list of ids per row): no type to check.
        signature=NodeSignature((key,), tuple(outputs), False, {}, outputs),
        table=table,
        key=key,
        features=chosen,
        prefix=prefix,
        timeout_ms=timeout_ms,
        on_timeout=on_timeout,
    )
