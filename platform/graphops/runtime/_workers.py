"""What each Ray Data worker of an offline run does: rebuild its operator once, run batches.

A model operator's actor (`StageWorker`) or a CPU operator's task (`StageTask`, one build per
worker process) runs its stages on numpy batches and reports seconds and rows per stage to the
run's `Monitor` actor without a round trip per batch; a node's failure reaches the driver intact.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, ClassVar

import ray
from pydantic import Field

from graphops.errors import GraphOpsError
from graphops.graph import Batch, dense_columns
from graphops.planner import plan
from graphops.runtime._remote import PinnedLoader, open_graph, stage_runner
from graphops.runtime.schema import GraphSpec


class StageSpec(GraphSpec):
    """Everything a Ray worker needs to rebuild one operator (picklable, hashable: a cache key)."""

    stages: Annotated[
        tuple[int, ...],
        Field(description="Positions in the plan of the stages the operator runs, in order."),
    ]
    keep: Annotated[
        tuple[str, ...] | None,
        Field(
            description="Columns the operator outputs (those later operators or the result "
            "read); None: every column."
        ),
    ] = None


class _MonitorState:
    """Collects seconds and rows per stage from the workers, and the first node failure."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.rows: dict[str, int] = {}
        self.failure: GraphOpsError | None = None

    def fail(self, error: GraphOpsError) -> None:
        self.failure = self.failure or error

    def first_failure(self) -> GraphOpsError | None:
        return self.failure

    def add(self, stage: str, seconds: float, rows: int) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        self.rows[stage] = self.rows.get(stage, 0) + rows

    def totals(self) -> tuple[dict[str, float], dict[str, int]]:
        return self.seconds, self.rows


Monitor = ray.remote(num_cpus=0)(_MonitorState)  # an actor class (typed, unlike a class decorator)


class StageWorker:
    """Runs one operator's stages on numpy batches; built once per actor (model loaded once)."""

    def __init__(self, spec: StageSpec, monitor: Any) -> None:
        package = open_graph(spec)
        stages = plan(package.graph, fuse=spec.fuse).stages
        # No MLflow tracking client in a worker: the driver checked the pins against the registry,
        # a model stage checks the artifacts it downloads against them; CPU stages load nothing.
        loader = PinnedLoader(spec.tracking_uri, spec.pickle_allowed)
        self.runners = [
            (stages[i].name, stage_runner(package, stages[i], loader, spec.models))
            for i in spec.stages
        ]
        self.keep = frozenset(spec.keep) if spec.keep is not None else None
        self.monitor = monitor

    def __call__(self, batch: Batch) -> Batch:
        columns = dense_columns(batch)
        for name, runner in self.runners:
            started = time.perf_counter()
            try:
                out = runner.run_batch(columns)
            except GraphOpsError as exc:  # Ray wraps it beyond recognition: hand it over intact
                ray.get(self.monitor.fail.remote(exc))
                raise
            rows = len(next(iter(out.values()))) if out else 0
            # Not awaited: the driver waits for the totals once, at the end (see `_totals`).
            self.monitor.add.remote(name, time.perf_counter() - started, rows)
            columns = out
        if self.keep is not None:
            columns = {k: v for k, v in columns.items() if k in self.keep}
        return columns


class StageTask:
    """A picklable function for CPU stages; each worker process builds its stage once."""

    _cache: ClassVar[dict[StageSpec, StageWorker]] = {}  # per worker process, by design

    def __init__(self, spec: StageSpec, monitor: Any) -> None:
        self.spec, self.monitor = spec, monitor

    def __call__(self, batch: Batch) -> Batch:
        worker = self._cache.get(self.spec)
        if worker is None:
            worker = self._cache[self.spec] = StageWorker(self.spec, self.monitor)
        worker.monitor = self.monitor  # a reused worker process may have served an earlier run
        return worker(batch)
