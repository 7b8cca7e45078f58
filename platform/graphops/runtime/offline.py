"""The offline runtime: a plan compiled to a Ray Data pipeline, one ``map_batches`` per operator.

The planner groups the stages into operators (`graphops.planner.offline_operators`): a CPU stage next
to a model stage runs inside the model stage's actor, every other stage is an operator of its own.
CPU operators run as tasks (Ray Data fuses them with their neighbours when it can); model
operators run in actor pools sized from the cluster (`graphops.planner.pool_size`), so each actor
loads its model once, without an MLflow tracking client, on large batches
(`Batching.offline_rows`). Each operator outputs only the columns a later stage or the result reads, so nothing else crosses
the object store. Every operator declares its CPUs (fractions allowed) so a small machine never
deadlocks; GPU requests are dropped with a notice on a cluster without GPUs, so a graph never
fails to schedule for lack of one. Stage timings reach the driver without a round trip per batch.
The node code is the local runner's, so outputs are equal.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.data

from graphops.errors import GraphOpsError, InputDataError, RunError
from graphops.graph import Batch, GraphPackage
from graphops.planner import (
    Operator,
    Plan,
    Stage,
    offline_operators,
    plan,
    pool_size,
    read_blocks,
)
from graphops.registry import Registry, ResolvedModel
from graphops.runtime._datasets import check_output, read_dataset, write_dataset
from graphops.runtime._workers import Monitor, StageSpec, StageTask, StageWorker
from graphops.runtime.checkout import resolve_pins, spec_of
from graphops.runtime.schema import CPU_NODE_SELECTOR, NOT_CPU_NODE_SELECTOR

SETTLE_S = 10.0
"""Longest wait, after the data is through, for the workers' last timing reports to arrive."""
IO_CPUS = 1.0
"""CPUs the actor pools leave free: for Ray Data's read tasks, and idle at the end of a write.

Ray Data checks for a free CPU once more when a write is done, while the pool's actors are still
alive and the write tasks just ended (the cluster's resource view lags): on a cluster whose CPUs
the pool and the writes held, it warns that the job "will hang". So the pools leave this much
and the write tasks (file I/O) reserve no CPU.
"""


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
    operators: tuple[Operator, ...] = ()
    phases: dict[str, float] = field(default_factory=dict)
    """Wall seconds of its parts: ``ray_start``, ``model_resolve`` and ``data_run``."""

    @property
    def rows_per_second(self) -> float:
        """Throughput of the whole run."""
        return self.rows / self.seconds if self.seconds else 0.0


def kept_columns(units: Plan | Sequence[Operator], keep: Sequence[str]) -> list[tuple[str, ...]]:
    """Per stage (or operator), the columns it outputs: what later ones read, plus ``keep``."""
    needed = set(keep)
    kept: list[tuple[str, ...]] = []
    ordered: Sequence[Stage | Operator] = units.stages if isinstance(units, Plan) else units
    for unit in reversed(ordered):
        kept.append(tuple(sorted(needed)))
        needed = (needed - set(unit.outputs)) | set(unit.inputs)
    return kept[::-1]


@dataclass(frozen=True)
class ClusterSize:
    """What the cluster holds, as the pool sizes are derived from it (`graphops.planner.pool_size`)."""

    cpus: float
    gpus: float

    @classmethod
    def current(cls) -> ClusterSize:
        """The connected cluster's logical CPUs and GPUs."""
        total = ray.cluster_resources()
        return cls(cpus=float(total.get("CPU", 1.0)), gpus=float(total.get("GPU", 0.0)))


def compile_offline(
    package: GraphPackage,
    registry: Registry,
    dataset: ray.data.Dataset,
    pins: Mapping[str, ResolvedModel],
    *,
    fuse: bool = True,
    colocate: bool = True,
    gpus: bool = False,
    monitor: Any = None,
    keep: Sequence[str] | None = None,
    cluster: ClusterSize | None = None,
    cpu_nodes: bool = False,
) -> tuple[ray.data.Dataset, Plan, tuple[Operator, ...]]:
    """Append one ``map_batches`` per offline operator of the graph's plan to ``dataset``.

    Args:
        package: The graph package (its path is how workers load the same code).
        registry: Where workers load the pinned models from (its tracking URI).
        dataset: Input rows holding the request fields (other columns pass through).
        pins: The exact model version per model node, already checked against the registry
            (`Registry.check_pins`; workers check the artifacts against them).
        fuse: Compile the fused plan (default) or one stage per node.
        colocate: Run CPU stages next to a model stage inside its actor where the plan allows
            (`graphops.planner.offline_operators`); False: one operator per stage.
        gpus: Whether the cluster has GPUs; without, GPU requests become CPU-only.
        monitor: A `Monitor` actor collecting per-stage seconds (created when omitted).
        keep: The columns the result needs; each operator then outputs only those and what
            later operators read (column pruning). None: every column flows to the end.
        cluster: The cluster's size, for the actor pools (default: the connected cluster's).
        cpu_nodes: Operators that ask for no GPU run only on nodes labelled
            ``graphops.io/node-kind=cpu`` (`cpu_nodes_labelled`), never on a GPU node; GPU
            operators on any node but those.

    Returns:
        (the dataset with every operator appended, the plan, its operators).
    """
    the_plan = plan(package.graph, fuse=fuse)
    operators = offline_operators(the_plan, colocate=colocate)
    monitor = monitor or Monitor.remote()
    missing = [f for f in package.graph.request_fields if f not in dataset.columns()]
    if missing:
        raise InputDataError(
            f"The input lacks the request field(s) {', '.join(missing)} "
            f"(it has {', '.join(dataset.columns())}).",
            fix=f"Provide columns {', '.join(package.graph.request_fields)} "
            f"as {package.graph.request.__name__} describes.",
            graph=package.name,
        )
    kept = kept_columns(operators, keep) if keep is not None else [None] * len(operators)
    cluster = cluster or ClusterSize.current()
    tasks = IO_CPUS + sum(o.resources.cpus for o in operators if not o.actors)
    for op, op_keep in zip(operators, kept, strict=True):
        index = tuple(the_plan.stages.index(s) for s in op.stages)
        spec = spec_of(StageSpec, package, registry, pins, fuse=fuse, stages=index, keep=op_keep)
        with warnings.catch_warnings():
            # Ray 2.60 takes `max_restarts` (see `_operator`) only through `**ray_remote_args`,
            # deprecated for Ray 2.64 with no named parameter to replace it yet.
            warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated", DeprecationWarning)
            args = _operator(op, spec, monitor, gpus, cluster, tasks)
            if cpu_nodes:  # GPU operators: not on CPU nodes (the run's default selects them)
                args["label_selector"] = dict(
                    NOT_CPU_NODE_SELECTOR if args["num_gpus"] else CPU_NODE_SELECTOR
                )
            dataset = dataset.map_batches(**args)
    return dataset, the_plan, operators


def _operator(
    op: Operator, spec: StageSpec, monitor: Any, gpus: bool, cluster: ClusterSize, tasks: float
) -> dict[str, Any]:
    """``map_batches`` arguments for one operator: resources, batch size, tasks or an actor pool."""
    common: dict[str, Any] = {
        "batch_format": "numpy",
        "batch_size": op.batch_size,
        "num_cpus": op.resources.cpus,
        "num_gpus": op.resources.gpus if gpus else 0,
        "zero_copy_batch": True,
    }
    if op.resources.memory:
        common["memory"] = op.resources.memory
    if not op.actors:
        return {"fn": StageTask(spec, monitor), **common}
    low, high = pool_size(op, cluster.cpus, cluster.gpus if gpus else 0.0, others=tasks)
    return {
        "fn": StageWorker,
        "fn_constructor_kwargs": {"spec": spec, "monitor": monitor},
        "compute": ray.data.ActorPoolStrategy(min_size=low, max_size=high),
        # Not restarted: Ray Data hands every pool actor its DataContext and transform chain as
        # object-store refs, which a restart cannot count on (ray-project/ray#53727, core_worker
        # logs an error per actor otherwise). A lost actor fails the run with its cause instead
        # of retrying forever; a run is short and re-runnable, and our spec is tiny anyway.
        "max_restarts": 0,
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
    colocate: bool = True,
    cluster: ClusterSize | None = None,
    blocks: bool = True,
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
        pins: Exact model versions (from a lock), checked against the registry's digests here
            (workers then load them without MLflow's tracking client); resolved from the node
            URIs when omitted.
        fuse: Use the fused plan.
        colocate: Run CPU stages inside a neighbouring model stage's actor where the plan
            allows (`graphops.planner.offline_operators`).
        cluster: The cluster size the actor pools are sized for (default: the connected
            cluster's; `graphops.planner.pool_size`).
        blocks: Read few large blocks (`graphops.planner.read_blocks`) instead of Ray Data's
            default minimum of 200.
        address: Ray cluster address; default ``$RAY_ADDRESS`` or a local cluster.

    On a cluster with GPUs whose CPU nodes are labelled (`cpu_nodes_labelled`), every task Ray
    Data starts (file info, read, CPU operators, projections, write: the DataContext's
    ``label_selector``) and the run's Monitor run on those nodes only; GPU operators select
    any node but those (docs/environments.md, placement).
    """
    from graphops.runtime._ray import cpu_nodes_labelled, ensure_ray, has_gpus

    if output is not None:
        check_output(output)
    timer = time.perf_counter()
    ensure_ray(package.repo, address=address)
    ray_s = time.perf_counter() - timer
    timer = time.perf_counter()
    pinned = resolve_pins(package, registry, pins)
    if pins:  # freshly resolved pins were just verified; a lock's are checked once, here
        registry.check_pins(package.graph, pinned)
    resolve_s = time.perf_counter() - timer
    gpus = has_gpus()
    cpu_nodes = gpus and cpu_nodes_labelled(CPU_NODE_SELECTOR)
    io = {"label_selector": dict(CPU_NODE_SELECTOR)} if cpu_nodes else {}
    cluster = cluster or ClusterSize.current()
    # A dataset keeps the DataContext it was created with: set it before the read.
    context = ray.data.DataContext.get_current()
    preserve, min_blocks = context.execution_options.preserve_order, context.read_op_min_num_blocks
    selector = context.execution_options.label_selector
    context.execution_options.preserve_order = output is None  # collected results keep input order
    if cpu_nodes:  # every task Ray Data starts (file info, reads, projections, writes) by default
        context.execution_options.label_selector = dict(CPU_NODE_SELECTOR)
    if blocks:  # few large blocks: each costs every operator a task or call (see read_blocks)
        context.read_op_min_num_blocks = read_blocks(cluster.cpus)
    # An actor handle (its methods are typed by Ray as plain); on the CPU nodes where they are
    monitor: Any = Monitor.options(**io).remote()
    started = time.perf_counter()
    try:
        dataset = (
            read_dataset(source, io) if isinstance(source, Path) else ray.data.from_items(source)
        )
        passthrough = [c for c in dataset.columns() if c not in package.graph.request_fields]
        keep = [
            *package.graph.response_fields,
            *[c for c in passthrough if c not in package.graph.response_fields],
        ]
        dataset, the_plan, operators = compile_offline(
            package,
            registry,
            dataset,
            pinned,
            fuse=fuse,
            colocate=colocate,
            gpus=gpus,
            monitor=monitor,
            keep=keep,
            cluster=cluster,
            cpu_nodes=cpu_nodes,
        )
        dataset = dataset.select_columns(keep)
        columns: Batch = {}
        if output is None:
            parts = list(dataset.iter_batches(batch_format="numpy", batch_size=None))
            columns = {k: np.concatenate([p[k] for p in parts]) for k in keep} if parts else {}
        else:
            write_dataset(dataset, output, io)
    except ray.exceptions.RayError as exc:
        failure = ray.get(monitor.first_failure.remote())
        ray.kill(monitor)
        raise (failure or _unwrap(exc, package.name)) from exc
    except GraphOpsError:  # bad input, found before anything ran
        ray.kill(monitor)
        raise
    finally:
        context.execution_options.preserve_order = preserve
        context.execution_options.label_selector = selector
        context.read_op_min_num_blocks = min_blocks
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
        operators=operators,
        phases={"ray_start": ray_s, "model_resolve": resolve_s, "data_run": seconds},
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
