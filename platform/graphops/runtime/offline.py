"""The offline runtime: a plan compiled to a Ray Data pipeline, one ``map_batches`` per stage.

CPU stages run as tasks (Ray Data fuses them with their neighbours when it can); model stages run
in actor pools, so each actor loads its model once, on large batches (`Batching.offline_rows`).
Each operator outputs only the columns a later stage or the result reads, so nothing else crosses
the object store. Every operator declares its CPUs (fractions allowed) so a small machine never
deadlocks; GPU requests are dropped with a notice on a cluster without GPUs, so a graph never
fails to schedule for lack of one. Stage timings reach the driver without a round trip per batch.
The node code is the local runner's, so outputs are equal.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import ray
import ray.data
from pydantic import Field

from graphops.errors import GraphOpsError, InputDataError, RunError
from graphops.graph import Batch, GraphPackage, dense_columns
from graphops.plan import Plan, Stage, plan
from graphops.registry import Registry, ResolvedModel
from graphops.runtime._remote import open_graph, stage_runner
from graphops.runtime._table import FORMATS
from graphops.runtime.schema import GraphSpec, resolve_pins

CPU_BATCH_SIZE = 1024
"""Rows per batch for stages without a model (model stages use `Batching.offline_rows`)."""

SETTLE_S = 10.0
"""Longest wait, after the data is through, for the workers' last timing reports to arrive."""


class StageSpec(GraphSpec):
    """Everything a Ray worker needs to rebuild one stage (picklable, hashable: a cache key)."""

    index: Annotated[int, Field(ge=0, description="Position of the stage in the plan.")]
    keep: Annotated[
        tuple[str, ...] | None,
        Field(
            description="Columns the stage's operator outputs (those later stages or the "
            "result read); None: every column."
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


_Monitor = ray.remote(num_cpus=0)(_MonitorState)  # an actor class (typed, unlike a class decorator)


class _StageWorker:
    """Runs one stage's nodes on numpy batches; built once per actor (model loaded once)."""

    def __init__(self, spec: StageSpec, monitor: Any) -> None:
        package = open_graph(spec.repo, spec.graph, spec.content_hash)
        self.stage = plan(package.graph, fuse=spec.fuse).stages[spec.index]
        # MLflow is slow to set up: only stages holding a model open the registry.
        registry = (
            Registry(Path(spec.work_dir), spec.tracking_uri) if self.stage.model_nodes else None
        )
        self.runner = stage_runner(package, self.stage, registry, spec.models)
        self.keep = frozenset(spec.keep) if spec.keep is not None else None
        self.monitor = monitor

    def __call__(self, batch: Batch) -> Batch:
        started = time.perf_counter()
        try:
            out = self.runner.run_batch(dense_columns(batch))
        except GraphOpsError as exc:  # Ray wraps it beyond recognition: hand it over intact
            ray.get(self.monitor.fail.remote(exc))
            raise
        if self.keep is not None:
            out = {k: v for k, v in out.items() if k in self.keep}
        rows = len(next(iter(out.values()))) if out else 0
        # Not awaited: the driver waits for the totals once, at the end (see `_totals`).
        self.monitor.add.remote(self.stage.name, time.perf_counter() - started, rows)
        return out


class _StageTask:
    """A picklable function for CPU stages; each worker process builds its stage once."""

    _cache: ClassVar[dict[StageSpec, _StageWorker]] = {}  # per worker process, by design

    def __init__(self, spec: StageSpec, monitor: Any) -> None:
        self.spec, self.monitor = spec, monitor

    def __call__(self, batch: Batch) -> Batch:
        worker = self._cache.get(self.spec)
        if worker is None:
            worker = self._cache[self.spec] = _StageWorker(self.spec, self.monitor)
        worker.monitor = self.monitor  # a reused worker process may have served an earlier run
        return worker(batch)


@dataclass
class OfflineRun:
    """Result of an offline run: the plan, timings per stage and (when collected) the columns."""

    plan: Plan
    rows: int
    seconds: float
    stage_seconds: dict[str, float]
    pins: dict[str, ResolvedModel]
    gpu_dropped: bool
    columns: Batch = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        """Throughput of the whole run."""
        return self.rows / self.seconds if self.seconds else 0.0


def read_dataset(path: Path) -> ray.data.Dataset:
    """Open Parquet, JSON lines or CSV (a file or a folder of them) as a Ray dataset."""
    suffix = (next(iter(sorted(path.iterdir())), path) if path.is_dir() else path).suffix.lower()
    if not path.exists():
        raise InputDataError(f"Input {path} does not exist.", fix="Check the path.", file=path)
    if suffix == ".csv":
        return ray.data.read_csv(str(path))
    kind = FORMATS.get(suffix)
    if kind == "parquet":
        return _read_parquet(path)
    if kind == "jsonl":
        return ray.data.read_json(str(path), lines=True)
    raise InputDataError(
        f'Got "{path.name}": unknown file type "{suffix}".',
        fix="Use Parquet (.parquet), JSON lines (.jsonl) or CSV (.csv).",
        file=path,
    )


def _read_parquet(path: Path) -> ray.data.Dataset:
    """Parquet through Ray Data's V1 datasource unless ``RAY_DATA_USE_DATASOURCE_V2`` is set.

    On Ray 2.60 the V2 path starts a pool of footer-reading actors: 6.6-9 s for 1,000 rows against
    0.5-1.4 s with V1 (docs/performance.md), for the same blocks.
    """
    context = ray.data.DataContext.get_current()
    before = context.use_datasource_v2
    if "RAY_DATA_USE_DATASOURCE_V2" not in os.environ:
        context.use_datasource_v2 = False
    try:
        return ray.data.read_parquet(str(path))
    finally:
        context.use_datasource_v2 = before


def kept_columns(the_plan: Plan, keep: Sequence[str]) -> list[tuple[str, ...]]:
    """Per stage, the columns its operator outputs: what later stages read, plus ``keep``."""
    needed = set(keep)
    kept: list[tuple[str, ...]] = []
    for stage in reversed(the_plan.stages):
        kept.append(tuple(sorted(needed)))
        needed = (needed - set(stage.outputs)) | set(stage.inputs)
    return kept[::-1]


def compile_offline(
    package: GraphPackage,
    registry: Registry,
    dataset: ray.data.Dataset,
    pins: Mapping[str, ResolvedModel],
    *,
    fuse: bool = True,
    gpus: bool = False,
    monitor: Any = None,
    keep: Sequence[str] | None = None,
) -> tuple[ray.data.Dataset, Plan]:
    """Append one ``map_batches`` per stage of the graph's plan to ``dataset``.

    Args:
        package: The graph package (its path is how workers load the same code).
        registry: Where workers load the pinned models from.
        dataset: Input rows holding the request fields (other columns pass through).
        pins: The exact model version per model node (see `Registry.load_models`).
        fuse: Compile the fused plan (default) or one operator per node.
        gpus: Whether the cluster has GPUs; without, GPU requests become CPU-only.
        monitor: A `_Monitor` actor collecting per-stage seconds (created when omitted).
        keep: The columns the result needs; each operator then outputs only those and what
            later stages read (column pruning). None: every column flows to the end.

    Returns:
        (the dataset with every stage appended, the plan).
    """
    the_plan = plan(package.graph, fuse=fuse)
    monitor = monitor or _Monitor.remote()
    missing = [f for f in package.graph.request_fields if f not in dataset.columns()]
    if missing:
        raise InputDataError(
            f"The input lacks the request field(s) {', '.join(missing)} "
            f"(it has {', '.join(dataset.columns())}).",
            fix=f"Provide columns {', '.join(package.graph.request_fields)} "
            f"as {package.graph.request.__name__} describes.",
            graph=package.name,
        )
    kept = kept_columns(the_plan, keep) if keep is not None else [None] * len(the_plan.stages)
    for index, stage in enumerate(the_plan.stages):
        spec = StageSpec.of(package, registry, pins, fuse=fuse, index=index, keep=kept[index])
        dataset = dataset.map_batches(**_operator(stage, spec, monitor, gpus))
    return dataset, the_plan


def _operator(stage: Stage, spec: StageSpec, monitor: Any, gpus: bool) -> dict[str, Any]:
    """``map_batches`` arguments for one stage: resources, batch size, tasks or an actor pool."""
    common: dict[str, Any] = {
        "batch_format": "numpy",
        "num_cpus": stage.resources.cpus,
        "num_gpus": stage.resources.gpus if gpus else 0,
        "zero_copy_batch": True,
    }
    if stage.resources.memory:
        common["memory"] = stage.resources.memory
    if not stage.model_nodes:
        return {"fn": _StageTask(spec, monitor), "batch_size": CPU_BATCH_SIZE, **common}
    s = stage.scaling
    return {
        "fn": _StageWorker,
        "fn_constructor_kwargs": {"spec": spec, "monitor": monitor},
        "batch_size": stage.batching.offline_rows if stage.batching else CPU_BATCH_SIZE,
        "compute": ray.data.ActorPoolStrategy(min_size=s.min_replicas or 1, max_size=s.max_replicas)
        if s.autoscaling
        else ray.data.ActorPoolStrategy(size=s.replicas),
        **common,
    }


def run_offline(
    package: GraphPackage,
    registry: Registry,
    source: Path | list[dict[str, Any]],
    *,
    output: Path | None = None,
    pins: Mapping[str, ResolvedModel] | None = None,
    fuse: bool = True,
    address: str | None = None,
) -> OfflineRun:
    """Run a graph on Ray Data: read ``source``, run every stage, write ``output`` or collect.

    Without ``output`` the result columns (response fields plus passed-through input columns) are
    collected in input order (for validation); with it they are written as Parquet, JSON lines or
    CSV files into that folder, in whatever order is fastest.

    Args:
        package: The graph package.
        registry: Where models are resolved and loaded.
        source: A file/folder path or in-memory rows.
        output: Folder to write to (format from its suffix), or None to collect.
        pins: Exact model versions (from a lock); resolved from the node URIs when omitted.
        fuse: Use the fused plan.
        address: Ray cluster address; default ``$RAY_ADDRESS`` or a local cluster.
    """
    from graphops.runtime._ray import ensure_ray, has_gpus

    if output is not None:
        check_output(output)
    ensure_ray(package.repo, address=address)
    pinned = resolve_pins(package, registry, pins)
    dataset = read_dataset(source) if isinstance(source, Path) else ray.data.from_items(source)
    passthrough = [c for c in dataset.columns() if c not in package.graph.request_fields]
    keep = [
        *package.graph.response_fields,
        *[c for c in passthrough if c not in package.graph.response_fields],
    ]
    gpus = has_gpus()
    monitor: Any = _Monitor.remote()  # an actor handle: its methods are typed by Ray as plain
    context = ray.data.DataContext.get_current()
    preserve = context.execution_options.preserve_order
    context.execution_options.preserve_order = output is None  # collected results keep input order
    started = time.perf_counter()
    try:
        dataset, the_plan = compile_offline(
            package, registry, dataset, pinned, fuse=fuse, gpus=gpus, monitor=monitor, keep=keep
        )
        dataset = dataset.select_columns(keep)
        columns: Batch = {}
        if output is None:
            parts = list(dataset.iter_batches(batch_format="numpy", batch_size=None))
            columns = {k: np.concatenate([p[k] for p in parts]) for k in keep} if parts else {}
        else:
            _write(dataset, output)
    except ray.exceptions.RayError as exc:
        failure = ray.get(monitor.first_failure.remote())
        ray.kill(monitor)
        raise (failure or _unwrap(exc, package.name)) from exc
    finally:
        context.execution_options.preserve_order = preserve
    seconds = time.perf_counter() - started
    last = the_plan.stages[-1].name
    expected = len(next(iter(columns.values()))) if columns else None
    stage_seconds, stage_rows = _totals(monitor, last, expected)
    # Worker processes keep the handle cached with their stage: without this the actor (and its
    # process) would outlive the run.
    ray.kill(monitor)
    return OfflineRun(
        plan=the_plan,
        rows=stage_rows.get(last, 0),
        seconds=seconds,
        stage_seconds={s.name: stage_seconds.get(s.name, 0.0) for s in the_plan.stages},
        pins=pinned,
        gpu_dropped=not gpus and any(s.resources.gpus for s in the_plan.stages),
        columns=columns,
    )


def _totals(
    monitor: Any, last: str, expected: int | None
) -> tuple[dict[str, float], dict[str, int]]:
    """The monitor's totals once every report has arrived (reports are sent without waiting).

    Done when the last stage has reported ``expected`` rows, or (rows unknown: written output)
    when two reads agree; at most `SETTLE_S` seconds.
    """
    deadline = time.monotonic() + SETTLE_S
    previous: Any = None
    while True:
        seconds, rows = ray.get(monitor.totals.remote())
        done = rows.get(last, 0) >= expected if expected is not None else rows == previous
        if done or time.monotonic() > deadline:
            return seconds, rows
        previous = dict(rows)
        time.sleep(0.05)


def _unwrap(exc: BaseException, graph: str) -> GraphOpsError:
    """A short `RunError` for a Ray failure that no node reported (e.g. a worker crash)."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    first = str(root).strip().splitlines()[0] if str(root).strip() else type(root).__name__
    return RunError(
        f"The Ray Data job failed: {type(root).__name__}: {first}",
        fix="See the worker logs under /tmp/ray/session_latest/logs for the full trace.",
        graph=graph,
    )


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


def _write(dataset: ray.data.Dataset, output: Path) -> None:
    kind = check_output(output)
    if kind == "csv":
        dataset.write_csv(str(output))
    elif kind == "parquet":
        dataset.write_parquet(str(output))
    else:
        dataset.write_json(str(output))
