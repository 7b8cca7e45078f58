"""Where the time goes: a model stage's setup in a fresh Ray worker, and its per-batch work."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from benchmarks._baselines import (
    CARRIED,
    GRAPH,
    MODEL_NODE,
    Bench,
    ModelActor,
    load_net,
    normalize,
    stage_monitor,
)

TIMER_CALLS = 300


@ray.remote(num_cpus=0.5)
class Probe:
    """Times, in a fresh Ray worker, each step of building a model stage."""

    def __init__(self) -> None:
        self.born = time.time()

    def born_at(self) -> float:
        """When the actor's constructor ran (epoch seconds)."""
        return self.born

    def setup(
        self, repo: str, source: str, tracking_uri: str, work_dir: str, pin: dict[str, Any]
    ) -> dict[str, float]:
        """Seconds per step: imports, the hand-written model load, then graphops' stage build."""
        import importlib

        spent: dict[str, float] = {}

        def lap(name: str, fn: Callable[[], Any]) -> Any:
            started = time.perf_counter()
            result = fn()
            spent[name] = time.perf_counter() - started
            return result

        lap("import_torch", lambda: importlib.import_module("torch"))
        lap("handwritten_model_load", lambda: load_net(repo, source, tracking_uri))
        lap("import_graphops_offline", lambda: importlib.import_module("graphops.runtime.offline"))
        from graphops.graph import load_graph
        from graphops.planner import plan
        from graphops.registry import Registry, ResolvedModel, load_pinned

        package = lap("graphops_load_graph", lambda: load_graph(Path(repo), GRAPH))
        lap("graphops_plan", lambda: plan(package.graph))
        node = package.graph.node(MODEL_NODE)
        pinned = ResolvedModel.model_validate(pin)
        # What a stage worker does now: the pin's artifacts, digest checked, no tracking client.
        lap("graphops_model_load", lambda: load_pinned(node, pinned, tracking_uri))  # type: ignore[arg-type]
        # What it did before (the lever): a Registry, whose load builds MLflow's tracking client.
        registry = lap("graphops_registry_init", lambda: Registry(Path(work_dir), tracking_uri))
        lap("graphops_model_load_with_client", lambda: registry.load(node, pinned))  # type: ignore[arg-type]
        return spent

    def timer_round_trip(self, timer: Any, calls: int) -> list[float]:
        """Seconds per ``ray.get(timer.add.remote(...))``, as `_StageWorker` does per batch."""
        spent = []
        for _ in range(calls):
            started = time.perf_counter()
            ray.get(timer.add.remote("probe", 0.0, 64))
            spent.append(time.perf_counter() - started)
        return spent


def probe(bench: Bench) -> dict[str, Any]:
    """Actor start, imports, graph and model loading, and the per-batch timer call, measured."""
    submitted = time.time()
    actor = Probe.remote()  # type: ignore[attr-defined]
    born = ray.get(actor.born_at.remote())
    steps = ray.get(
        actor.setup.remote(
            str(bench.repo),
            bench.source(),
            bench.registry.tracking_uri,
            str(bench.work / ".graphops"),
            bench.registry.resolve(bench.node.uri).model_dump(),  # type: ignore[attr-defined]
        )
    )
    created = time.perf_counter()
    timer = stage_monitor()
    ray.get(timer.totals.remote())  # graphops creates one per run; workers wait for it to be up
    timer_ready = time.perf_counter() - created
    trips = ray.get(actor.timer_round_trip.remote(timer, TIMER_CALLS))
    ray.kill(actor)
    ray.kill(timer)
    return {
        "actor_start_s": born - submitted,
        "timer_actor_ready_s": timer_ready,
        "steps_s": steps,
        "timer_round_trip_ms": {
            "median": statistics.median(trips) * 1e3,
            "p90": float(np.percentile(trips, 90)) * 1e3,
            "calls": TIMER_CALLS,
        },
    }


def model_stage_batches(bench: Bench, path: Path, rows: int, repeats: int = 3) -> dict[str, Any]:
    """Diagnostic, in-process (no Ray): the model stage's per-batch work, hand-written vs graphops.

    Each 64-row batch is sliced from an Arrow block and converted to numpy (``batch_in``), run
    (``udf``), converted back to Arrow (``batch_out``); the outputs are concatenated (``concat``).
    The hand-written block holds the columns that stage needs; graphops' block also carries the
    dense pixels (its stages return every column they received) and runs through `LocalRunner`.
    """
    import torch
    from ray.data.block import BlockAccessor

    from graphops.graph import dense_columns as _dense
    from graphops.planner import plan
    from graphops.runtime.runner import LocalRunner

    table = pq.read_table(path)
    pixels = np.stack(table.column("pixels").to_numpy(zero_copy_only=False))
    carried = {c: table.column(c).to_numpy() for c in CARRIED}
    features = normalize({"pixels": pixels})["features"]
    blocks = {
        "handwritten": BlockAccessor.batch_to_block({**carried, "features": features}),
        "graphops": BlockAccessor.batch_to_block(
            {**carried, "pixels": pixels, "features": features}
        ),
    }
    actor = ModelActor(str(bench.repo), bench.source(), bench.registry.tracking_uri)
    stage = next(s for s in plan(bench.package.graph).stages if s.name == MODEL_NODE)
    runner = LocalRunner(
        bench.package.graph, {MODEL_NODE: bench.registry.load(bench.node)}, nodes=stage.nodes
    )
    udfs = {"handwritten": actor, "graphops": lambda batch: runner.run_batch(_dense(batch))}
    zero_copy = {"handwritten": False, "graphops": True}  # as each pipeline asks Ray Data

    def once(system: str) -> dict[str, float]:
        spent = dict.fromkeys(("batch_in", "udf", "batch_out", "concat"), 0.0)
        outs = []
        for i in range(0, rows, bench.batch_size):
            t0 = time.perf_counter()
            batch = BlockAccessor.for_block(blocks[system].slice(i, bench.batch_size))
            batch = batch.to_batch_format("numpy")
            if not zero_copy[system]:
                batch = {k: v.copy() for k, v in batch.items()}
            t1 = time.perf_counter()
            out = udfs[system](batch)
            t2 = time.perf_counter()
            outs.append(BlockAccessor.batch_to_block(out))
            t3 = time.perf_counter()
            spent["batch_in"] += t1 - t0
            spent["udf"] += t2 - t1
            spent["batch_out"] += t3 - t2
        t0 = time.perf_counter()
        pa.concat_tables(outs)
        spent["concat"] = time.perf_counter() - t0
        spent["total"] = sum(spent.values())
        return spent

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = {s: [once(s) for _ in range(repeats)] for s in udfs}
    finally:
        torch.set_num_threads(threads)
    return {
        "rows": rows,
        "batches": -(-rows // bench.batch_size),
        "repeats": repeats,
        "block_bytes": {s: b.nbytes for s, b in blocks.items()},
        "median_s": {
            s: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for s, rs in runs.items()
        },
    }
