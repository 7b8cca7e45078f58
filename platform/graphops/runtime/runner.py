"""The local runner: reference semantics of a graph, in-process, no Ray.

The offline (Ray Data) and online (Ray Serve) runtimes must produce what this runner produces.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from graphops.errors import GraphOpsError, RunError, Where
from graphops.features import FeaturesConfig, FeatureStore, LookupStats, open_store, uses_features
from graphops.graph import (
    MODEL_PARAMETER,
    Batch,
    FeatureLookup,
    Graph,
    GraphPackage,
    MetricResult,
    ModelNode,
    Node,
    evaluate,
)
from graphops.registry import Registry, ResolvedModel
from graphops.runtime._table import to_columns, to_rows


@dataclass
class RunStats:
    """Rows processed and seconds spent per node during a run."""

    rows: int = 0
    seconds: float = 0.0
    node_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        """Throughput of the whole run."""
        return self.rows / self.seconds if self.seconds else 0.0


class LocalRunner:
    """Runs a graph's nodes in topological order over column batches.

    Args:
        graph: The graph to run.
        models: Loaded model per model-node name (see `graphops.registry.Registry.load_models`).
        nodes: Run only these nodes, in this order (one stage of a plan); default: all, in
            topological order.
        features: The feature store that lookup nodes read (see `graphops.features.open_store`).
    """

    def __init__(
        self,
        graph: Graph,
        models: Mapping[str, Any],
        nodes: Sequence[Node] | None = None,
        features: FeatureStore | None = None,
    ) -> None:
        self.nodes = tuple(nodes) if nodes is not None else graph.order
        missing = [n.name for n in self.nodes if isinstance(n, ModelNode) and n.name not in models]
        if missing:
            raise RunError(
                f"No loaded model for model node(s) {', '.join(missing)}.",
                fix="Load them with Registry.load_models(graph) and pass the result.",
                graph=graph.name,
            )
        lookups = [n.name for n in self.nodes if isinstance(n, FeatureLookup)]
        if lookups and features is None:
            raise RunError(
                f"No feature store for lookup node(s) {', '.join(lookups)}.",
                fix="Open one with graphops.features.open_store(config, package.path) and pass "
                "it as features=.",
                graph=graph.name,
            )
        for n in self.nodes:  # load tables / check Redis now, not inside a request's timeout
            if isinstance(n, FeatureLookup) and features is not None:
                try:
                    features.prepare(n.table)
                except GraphOpsError as exc:
                    at = (exc.file, exc.line) if exc.file else (n.file, n.line)
                    raise type(exc)(
                        exc.what, fix=exc.fix, graph=graph.name, node=n.name, file=at[0], line=at[1]
                    ) from exc
        self.graph = graph
        self.models = dict(models)
        self.features = features
        self.stats = RunStats()

    def run_batch(self, batch: Batch) -> Batch:
        """Run every node on one batch; returns the input columns plus every produced column."""
        columns = dict(batch)
        rows = _rows(columns)
        for n in self.nodes:
            started = time.perf_counter()
            columns.update(self._call(n, columns, rows))
            self.stats.node_seconds[n.name] = self.stats.node_seconds.get(n.name, 0.0) + (
                time.perf_counter() - started
            )
        self.stats.rows += rows
        return columns

    def run(self, batch: Batch, *, batch_size: int = 256) -> Batch:
        """Run over all rows of ``batch`` in slices of ``batch_size`` and concatenate the results."""
        started = time.perf_counter()
        total = _rows(dict(batch))
        if 0 < total <= batch_size:  # one slice: nothing to cut or put back together
            out = self.run_batch(batch)
            self.stats.seconds += time.perf_counter() - started
            return out
        parts = [
            self.run_batch({k: v[i : i + batch_size] for k, v in batch.items()})
            for i in range(0, total, batch_size)
        ]
        self.stats.seconds += time.perf_counter() - started
        if not parts:
            return {k: v[:0] for k, v in batch.items()}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def respond(self, columns: Batch) -> list[dict[str, Any]]:
        """Response rows from output columns, checked against the graph's response schema."""
        rows = to_rows(columns, self.graph.response_fields)
        try:
            # The response class is the graph's own, known only at run time.
            TypeAdapter(list[self.graph.response]).validate_python(rows)  # type: ignore[name-defined]
        except ValidationError as exc:
            err = exc.errors()[0]
            index, column, *_ = (*err["loc"], None)
            producer = self.graph.producer(str(column))
            raise RunError(
                f'Row {int(index) + 1}: response field "{column}" = {err.get("input")!r} violates '
                f"{self.graph.response.__name__}: {err['msg']}.",
                fix="Make the producing node return values the response schema allows.",
                graph=self.graph.name,
                node=producer.name if producer else None,
                file=producer.file if producer else None,
                line=producer.line if producer else None,
            ) from exc
        return rows

    def _call(self, n: Node, columns: Batch, rows: int) -> Batch:
        where: Where = {"graph": self.graph.name, "node": n.name, "file": n.file, "line": n.line}
        extra: dict[str, Any] = {}
        if isinstance(n, ModelNode):
            extra[MODEL_PARAMETER] = self.models[n.name]
        elif isinstance(n, FeatureLookup):
            extra["store"] = self.features
        try:
            result: object = n.run(columns, **extra)  # graph code: its hints are not a promise
        except GraphOpsError as exc:  # a store's own error: keep its what and fix, add where
            if exc.graph is not None:
                raise
            at: Where = {"file": exc.file, "line": exc.line} if exc.file else {}
            raise type(exc)(exc.what, fix=exc.fix, **(where | at)) from exc
        except Exception as exc:
            raise RunError(
                f"The node raised {type(exc).__name__}: {exc}",
                fix="Fix the node; run it alone on a small batch to reproduce.",
                **where,
            ) from exc
        if not isinstance(result, Mapping) or set(result) != set(n.outputs):
            got = sorted(result) if isinstance(result, Mapping) else type(result).__name__
            raise RunError(
                f"The node returned {got}; it declares the columns {list(n.outputs)}.",
                fix="Return a dict with exactly the keys of its TypedDict return type.",
                **where,
            )
        out = {}
        for column, value in result.items():
            array = np.asarray(value)
            if array.ndim == 0 or len(array) != rows:
                raise RunError(
                    f'Column "{column}" has {array.shape or "a scalar"} for a batch of {rows} rows.',
                    fix="Return one value per input row (vectorize over the batch).",
                    **where,
                )
            out[column] = array
        return out


@dataclass
class LocalRun:
    """What `run_local` produced: all columns, response rows, timings, pins and metrics."""

    columns: Batch
    responses: list[dict[str, Any]]
    stats: RunStats
    pins: dict[str, ResolvedModel]
    metrics: list[MetricResult]
    features: LookupStats | None = None


def run_local(
    package: GraphPackage,
    registry: Registry,
    rows: list[dict[str, Any]],
    *,
    batch_size: int = 256,
    source: str = "input",
    features: FeaturesConfig | None = None,
) -> LocalRun:
    """Load the graph's models, run it on ``rows`` and score it when the rows carry labels.

    Args:
        package: The loaded graph package.
        registry: Where its models come from.
        rows: Input rows: request fields plus any other columns (kept, e.g. the label).
        batch_size: Rows per batch.
        source: Name of the input for error messages (e.g. the file name).
        features: The environment's feature store (default: the embedded Parquet store).
    """
    graph = package.graph
    columns, passthrough = to_columns(rows, graph.request, source=source)
    models, pins = registry.load_models(graph)
    store = open_store(features, package.path) if uses_features(graph.nodes) else None
    runner = LocalRunner(graph, models, features=store)
    try:
        out = runner.run(columns, batch_size=batch_size)
    finally:
        if store is not None:
            store.close()
    out.update({k: v for k, v in passthrough.items() if k not in out})
    validation = graph.validation
    labelled = validation is not None and validation.label in passthrough
    metrics = evaluate(validation, out) if validation is not None and labelled else []
    stats = store.stats if store is not None else None
    return LocalRun(out, runner.respond(out), runner.stats, pins, metrics, stats)


def _rows(columns: Batch) -> int:
    return len(next(iter(columns.values()))) if columns else 0
