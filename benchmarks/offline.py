"""Offline throughput of graphops' Ray Data runtime on the digits graph, against two baselines.

Every system does the same work: read Parquet, scale pixels 0..16 to 0..1, run DigitsNet,
softmax to a label and a confidence, write Parquet (carrying the ``row`` and ``digit`` columns).

- ``graphops``: `graphops.runtime.offline.run_offline` on the graph's plan.
- ``handwritten``: the Ray Data pipeline one would write by hand, with the operators, resources
  and batch sizes graphops declares (read -> 3 x ``map_batches`` -> write).
- ``torch_b64`` / ``torch_b1024``: a plain in-process loop (pyarrow, numpy, torch on one thread,
  the one CPU Ray gives the model stage) in batches of 64 (the model node's batch size) and 1024.

The machine is small and shared, so every figure is a ratio to a baseline measured in the same
process, with repeats and medians (graphops and the hand-written pipeline alternate their order).
Run it with ``nox -s bench`` or::

    python -m benchmarks.offline --rows 200000 --repeats 3 --out benchmarks/results/offline.json

``--diagnose`` adds what explains the gap between graphops and the hand-written pipeline: that
pipeline plus one graphops behaviour at a time, Ray Data's read + write floor (datasource V2 vs
V1), and the model stage's per-batch work measured in-process. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import itertools
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data

REPO = Path(__file__).resolve().parents[1]
GRAPH = "digits"
MODEL_NODE = "logits"
SMALL_ROWS = 1_000
CHECK_ROWS = 1_000
CARRIED = ("row", "digit")
TARGETS = {"throughput": 0.95, "fixed_cost": 1.2}
SYSTEMS = ("graphops", "handwritten")
TORCH_BATCHES = (64, 1024)
TIMER_CALLS = 300

Batch = dict[str, np.ndarray]


# -- the hand-written pipeline (also used, in-process, by the torch loop) -----------------------


def load_net(repo: str, source: str, tracking_uri: str) -> Any:
    """DigitsNet from a registered version's artifacts (safetensors + config), no graphops."""
    from mlflow.artifacts import download_artifacts
    from safetensors.torch import load_file

    if repo not in sys.path:
        sys.path.insert(0, repo)
    from graphs.digits.network import DigitsNet

    with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
        local = Path(
            download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=tracking_uri)
        )
        config = json.loads((local / "graphops-model.json").read_text())["config"]
        net = DigitsNet(**config)
        net.load_state_dict(load_file(str(local / "weights.safetensors")))
    return net.eval()


def normalize(batch: Batch) -> Batch:
    """Pixels 0..16 -> features 0..1; Ray hands the list column as an object array: stack it."""
    pixels = np.stack(batch.pop("pixels"))
    return {**batch, "features": pixels.astype(np.float32) / 16.0}


class ModelActor:
    """Loads the model once per actor; logits for a batch of features."""

    def __init__(self, repo: str, source: str, tracking_uri: str) -> None:
        import torch

        self.torch = torch
        self.net = load_net(repo, source, tracking_uri)

    def __call__(self, batch: Batch) -> Batch:
        """Logits for the batch's features (other columns pass through)."""
        features = batch.pop("features")
        features = features if features.flags.writeable else features.copy()
        with self.torch.inference_mode():
            logits = self.net(self.torch.from_numpy(features)).numpy()
        return {**batch, "logits": logits}


def postprocess(batch: Batch) -> Batch:
    """Most likely digit and its softmax probability."""
    logits = batch.pop("logits")
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    return {**batch, "label": probs.argmax(axis=1), "confidence": probs.max(axis=1)}


# -- diagnostics: the hand-written pipeline plus one graphops behaviour at a time -------------


class Step:
    """A hand-written step, optionally reporting per batch as graphops does, or carrying columns."""

    def __init__(
        self, fn: Callable[[Batch], Batch], stage: str, *, timer: Any, carry: bool
    ) -> None:
        self.fn, self.stage, self.timer, self.carry = fn, stage, timer, carry

    def __call__(self, batch: Batch) -> Batch:
        """Run the step on one batch."""
        started = time.perf_counter()
        if self.carry:  # as graphops: densify list columns, return every column received
            from graphops.runtime.offline import _dense

            batch = _dense(batch)
            out = {**batch, **self.fn(dict(batch))}
        else:
            out = self.fn(batch)
        if self.timer is not None:
            rows = len(next(iter(out.values())))
            ray.get(self.timer.add.remote(self.stage, time.perf_counter() - started, rows))
        return out


class InstrumentedModel(ModelActor):
    """`ModelActor` as a `Step`: timed per batch and/or carrying its input columns."""

    def __init__(self, repo: str, source: str, tracking_uri: str, timer: Any, carry: bool) -> None:
        super().__init__(repo, source, tracking_uri)
        self.step = Step(super().__call__, MODEL_NODE, timer=timer, carry=carry)

    def __call__(self, batch: Batch) -> Batch:
        """Run the model step on one batch."""
        return self.step(batch)


# -- the systems ----------------------------------------------------------------------------


class Bench:
    """Shared state: the graph, the registry, the model's artifact source, the plan's settings."""

    def __init__(self, work: Path, repo: Path) -> None:
        from graphops.graph import load_graph
        from graphops.plan import plan
        from graphops.registry import Registry

        self.work, self.repo = work, repo
        self.package = load_graph(repo, GRAPH)
        self.registry = Registry(work / ".graphops")
        self.node = self.package.graph.node(MODEL_NODE)
        stages = {s.name: s for s in plan(self.package.graph).stages}
        self.cpus = {name: s.resources.cpus for name, s in stages.items()}
        self.batch_size = stages[MODEL_NODE].batching.max_batch_size  # type: ignore[union-attr]
        self.runs = 0

    def output(self, system: str, rows: int) -> Path:
        """A fresh output folder for one run."""
        self.runs += 1
        return self.work / "out" / f"{self.runs:03d}-{system}-{rows}.parquet"

    def source(self) -> str:
        """The artifact URI of digits@champion (an MLflow lookup, as a hand-written job does)."""
        uri = self.node.uri  # type: ignore[attr-defined]
        return self.registry.client.get_model_version_by_alias(uri.name, uri.alias).source

    def graphops(self, path: Path, rows: int) -> dict[str, Any]:
        """`run_offline` on the graph, writing Parquet; wall time around the whole call."""
        from graphops.runtime.offline import run_offline

        out = self.output("graphops", rows)
        started = time.perf_counter()
        run = run_offline(self.package, self.registry, path, output=out)
        wall = time.perf_counter() - started
        return {
            "wall_s": wall,
            "pipeline_s": run.seconds,
            "stage_seconds": run.stage_seconds,
            "reported_rows": run.rows,
            "output": str(out),
        }

    def handwritten(
        self, path: Path, rows: int, *, timer: bool = False, carry: bool = False
    ) -> dict[str, Any]:
        """The hand-written pipeline; ``timer`` / ``carry`` add one graphops behaviour each."""
        name = "handwritten" + "_timer" * timer + "_carry" * carry
        out = self.output(name, rows)
        started = time.perf_counter()
        kwargs = {
            "repo": str(self.repo),
            "source": self.source(),
            "tracking_uri": self.registry.tracking_uri,
        }
        steps: list[Any] = [normalize, ModelActor, postprocess]
        if timer or carry:
            extra = {"timer": stage_monitor() if timer else None, "carry": carry}
            steps = [
                Step(normalize, "features", **extra),
                InstrumentedModel,
                Step(postprocess, "prediction", **extra),
            ]
            kwargs |= extra
        ds = ray.data.read_parquet(str(path))
        ds = ds.map_batches(
            steps[0], batch_format="numpy", num_cpus=self.cpus["features"], batch_size=1024
        )
        ds = ds.map_batches(
            steps[1],
            compute=ray.data.ActorPoolStrategy(size=1),
            num_cpus=self.cpus[MODEL_NODE],
            batch_size=self.batch_size,
            batch_format="numpy",
            fn_constructor_kwargs=kwargs,
        )
        ds = ds.map_batches(
            steps[2], batch_format="numpy", num_cpus=self.cpus["prediction"], batch_size=1024
        )
        if carry:
            ds = ds.select_columns([*CARRIED, "label", "confidence"])
        ds.write_parquet(str(out))
        return {"wall_s": time.perf_counter() - started, "output": str(out)}

    def handwritten_timer(self, path: Path, rows: int) -> dict[str, Any]:
        """Diagnostic: plus graphops' per-batch ``ray.get(timer.add.remote(...))``."""
        return self.handwritten(path, rows, timer=True)

    def handwritten_carry(self, path: Path, rows: int) -> dict[str, Any]:
        """Diagnostic: plus graphops' data flow (every stage returns all columns it got)."""
        return self.handwritten(path, rows, carry=True)

    def read_write(self, path: Path, rows: int, *, v2: bool = True) -> dict[str, Any]:
        """Diagnostic: Ray Data's floor, read + write and nothing else (datasource V2 or V1)."""
        out = self.output(f"read_write_v{2 if v2 else 1}", rows)
        context = ray.data.DataContext.get_current()
        default = context.use_datasource_v2
        context.use_datasource_v2 = v2
        try:
            started = time.perf_counter()
            ray.data.read_parquet(str(path)).write_parquet(str(out))
            return {"wall_s": time.perf_counter() - started}
        finally:
            context.use_datasource_v2 = default

    def torch_loop(self, path: Path, rows: int, batch_size: int) -> dict[str, Any]:
        """The same work in-process: load, read, loop over batches, write."""
        import torch

        out = self.output(f"torch_b{batch_size}", rows)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the one CPU the model stage gets in Ray (OMP_NUM_THREADS=1)
        try:
            started = time.perf_counter()
            net = load_net(str(self.repo), self.source(), self.registry.tracking_uri)
            loaded = time.perf_counter()
            table = pq.read_table(path)
            pixels = np.stack(table.column("pixels").to_numpy(zero_copy_only=False))
            read = time.perf_counter()
            parts = []
            with torch.inference_mode():
                for i in range(0, len(pixels), batch_size):
                    batch = normalize({"pixels": pixels[i : i + batch_size]})
                    batch = {"logits": net(torch.from_numpy(batch["features"])).numpy()}
                    parts.append(postprocess(batch))
            computed = time.perf_counter()
            columns = {c: table.column(c) for c in CARRIED}
            for key in ("label", "confidence"):
                columns[key] = pa.array(np.concatenate([p[key] for p in parts]))
            out.mkdir(parents=True)
            pq.write_table(pa.table(columns), out / "part-0.parquet")
            done = time.perf_counter()
        finally:
            torch.set_num_threads(threads)
        return {
            "wall_s": done - started,
            "phases_s": {
                "model_load": loaded - started,
                "read_and_stack": read - loaded,
                "compute": computed - read,
                "write": done - computed,
            },
            "output": str(out),
        }


def stage_monitor() -> Any:
    """A new instance of the actor graphops' stage workers report to once per batch (private)."""
    import graphops.runtime.offline as offline

    cls = getattr(offline, "_Monitor", None) or offline._Timer  # type: ignore[attr-defined]
    return cls.remote()


# -- where the time goes: a fresh worker process doing what each system's actor does ---------


@ray.remote(num_cpus=0.5)
class Probe:
    """Times, in a fresh Ray worker, each step of building a model stage."""

    def __init__(self) -> None:
        self.born = time.time()

    def born_at(self) -> float:
        """When the actor's constructor ran (epoch seconds)."""
        return self.born

    def setup(self, repo: str, source: str, tracking_uri: str, work_dir: str) -> dict[str, float]:
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
        from graphops.plan import plan
        from graphops.registry import Registry

        package = lap("graphops_load_graph", lambda: load_graph(Path(repo), GRAPH))
        lap("graphops_plan", lambda: plan(package.graph))
        registry = lap("graphops_registry_init", lambda: Registry(Path(work_dir), tracking_uri))
        node = package.graph.node(MODEL_NODE)
        lap("graphops_model_load", lambda: registry.load(node))
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

    from graphops.plan import plan
    from graphops.runtime.offline import _dense
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


# -- input, checks, report ---------------------------------------------------------------------


def write_input(package_path: Path, folder: Path, rows: int, files: int) -> Path:
    """The validation split tiled to ``rows`` rows (plus a ``row`` id), as ``files`` Parquet files."""
    table = pq.read_table(package_path / "validation.parquet", columns=["pixels", "digit"])
    tiled = table.take(pa.array(np.arange(rows) % table.num_rows))
    tiled = tiled.add_column(0, "row", pa.array(np.arange(rows, dtype=np.int64)))
    folder.mkdir(parents=True)
    bounds = np.linspace(0, rows, files + 1, dtype=int)
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        pq.write_table(tiled.slice(lo, hi - lo), folder / f"part-{i:03d}.parquet")
    return folder


def read_output(path: str, rows: int, system: str) -> pa.Table:
    """An output sorted by row id; fail when rows are missing or duplicated."""
    table = pq.read_table(path).sort_by("row")
    ids = table.column("row").to_numpy()
    if len(ids) != rows or not np.array_equal(ids, np.arange(rows)):
        raise SystemExit(f"FAILED: {system} wrote {len(ids)} rows with row ids != 0..{rows - 1}.")
    return table


def verify(outputs: dict[str, str], rows: int) -> dict[str, Any]:
    """Labels equal on the first CHECK_ROWS rows across systems (else exit); agreement on all."""
    tables = {s: read_output(p, rows, s) for s, p in outputs.items()}
    reference_name = "torch_b64"
    ref = tables[reference_name]
    ref_labels = ref.column("label").to_numpy()
    result: dict[str, Any] = {"reference": reference_name, "rows": rows, "systems": {}}
    for system, table in tables.items():
        labels = table.column("label").to_numpy()
        head = min(CHECK_ROWS, rows)
        if not np.array_equal(labels[:head], ref_labels[:head]):
            bad = int(np.flatnonzero(labels[:head] != ref_labels[:head])[0])
            raise SystemExit(
                f"FAILED: {system} and {reference_name} disagree on row {bad} "
                f"({labels[bad]} vs {ref_labels[bad]})."
            )
        confidence = table.column("confidence").to_numpy()
        result["systems"][system] = {
            "labels_equal_first_rows": head,
            "label_agreement_all_rows": float(np.mean(labels == ref_labels)),
            "max_confidence_diff": float(
                np.max(np.abs(confidence - ref.column("confidence").to_numpy()))
            ),
            "accuracy_vs_digit": float(np.mean(labels == table.column("digit").to_numpy())),
        }
    return result


def median_of(runs: list[dict[str, Any]], key: str = "wall_s") -> float:
    """Median of one timing over repeated runs."""
    return statistics.median(r[key] for r in runs)


def paired(
    raw: dict[str, dict[str, list[dict[str, Any]]]], a: str, b: str, size: str
) -> list[float]:
    """Per repeat: ``a``'s wall time over ``b``'s, both measured in that repeat."""
    return [x["wall_s"] / y["wall_s"] for x, y in zip(raw[a][size], raw[b][size], strict=True)]


def summarize(raw: dict[str, dict[str, list[dict[str, Any]]]], rows: int) -> dict[str, Any]:
    """Medians, rows/s, ratios and targets from the raw timings.

    The headline ratios are medians of per-repeat ratios (each a pair of runs measured minutes
    apart, so slow drifts of the machine's load cancel); ratios of the medians are kept beside.
    """
    med: dict[str, dict[str, Any]] = {
        s: {
            size: {"wall_s": median_of(runs), "rows_per_s": int(size) / median_of(runs)}
            for size, runs in sizes.items()
        }
        for s, sizes in raw.items()
    }
    big, small = str(rows), str(SMALL_ROWS)
    for s in SYSTEMS:  # steady state: the extra rows over the extra time, fixed cost removed
        extra = med[s][big]["wall_s"] - med[s][small]["wall_s"]
        med[s]["marginal_rows_per_s"] = (rows - SMALL_ROWS) / extra if extra > 0 else None
    baselines = [b for b in raw if b != "graphops" and big in raw[b]]
    per_repeat = {  # graphops' throughput over b's = b's wall over graphops'
        f"graphops_vs_{b}": paired(raw, b, "graphops", big) for b in baselines
    }
    per_repeat["fixed_cost_graphops_vs_handwritten"] = paired(raw, "graphops", "handwritten", small)
    throughput = {
        k: statistics.median(v) for k, v in per_repeat.items() if k.startswith("graphops_vs")
    }
    fixed = statistics.median(per_repeat["fixed_cost_graphops_vs_handwritten"])
    of_medians = {
        **{
            f"graphops_vs_{b}": med["graphops"][big]["rows_per_s"] / med[b][big]["rows_per_s"]
            for b in baselines
        },
        "fixed_cost_graphops_vs_handwritten": med["graphops"][small]["wall_s"]
        / med["handwritten"][small]["wall_s"],
    }
    marginal = [med[s]["marginal_rows_per_s"] for s in SYSTEMS]
    targets = {
        "throughput_vs_handwritten": {
            "target": f">= {TARGETS['throughput']}",
            "value": throughput["graphops_vs_handwritten"],
            "ratio_of_medians": of_medians["graphops_vs_handwritten"],
            "met": throughput["graphops_vs_handwritten"] >= TARGETS["throughput"],
        },
        "fixed_cost_vs_handwritten": {
            "target": f"<= {TARGETS['fixed_cost']}",
            "value": fixed,
            "ratio_of_medians": of_medians["fixed_cost_graphops_vs_handwritten"],
            "met": fixed <= TARGETS["fixed_cost"],
        },
    }
    ratios = {
        "throughput": throughput,
        "fixed_cost_graphops_vs_handwritten": fixed,
        "per_repeat": per_repeat,
        "ratio_of_medians": of_medians,
        "marginal_throughput_graphops_vs_handwritten": marginal[0] / marginal[1]
        if all(marginal)
        else None,
    }
    diagnostics: dict[str, Any] = {}
    for s in ("handwritten_timer", "handwritten_carry"):
        if s in raw:
            slowdown = paired(raw, s, "handwritten", big)
            extra = [
                x["wall_s"] - y["wall_s"]
                for x, y in zip(raw[s][big], raw["handwritten"][big], strict=True)
            ]
            diagnostics[f"{s}_vs_handwritten"] = {
                "throughput_ratio": statistics.median(1 / r for r in slowdown),
                "extra_wall_s": statistics.median(extra),
                "per_repeat_throughput_ratio": [1 / r for r in slowdown],
            }
    if "read_write_v2" in raw:
        v2_over_v1 = paired(raw, "read_write_v2", "read_write_v1", small)
        diagnostics["read_write_1k_v2_vs_v1"] = {
            "v2_wall_s": med["read_write_v2"][small]["wall_s"],
            "v1_wall_s": med["read_write_v1"][small]["wall_s"],
            "ratio": statistics.median(v2_over_v1),
        }
    return {"medians": med, "ratios": ratios, "targets": targets, "diagnostics": diagnostics}


def breakdown(result: dict[str, Any], rows: int) -> dict[str, Any]:
    """Where the time goes: setup, per-worker setup (probe), graphops' stage timer, torch phases."""
    raw, probed = result["raw"], result["probe"]
    runs = raw["graphops"][str(rows)]
    stage = {
        name: statistics.median(r["stage_seconds"][name] for r in runs)
        for name in runs[0]["stage_seconds"]
    }
    wall = median_of(runs)
    steps = probed["steps_s"]
    batches = {"model_stage": -(-rows // 64), "cpu_stages": 2 * -(-rows // 1024)}
    trip = probed["timer_round_trip_ms"]["median"] / 1e3
    torch_runs = raw["torch_b64"][str(rows)]
    return {
        "ray_init_s": result["setup_s"]["ray_init"],
        "train_and_register_s": result["setup_s"]["train_and_register"],
        "actor_start_s": probed["actor_start_s"],
        "timer_actor_ready_s": probed["timer_actor_ready_s"],
        "model_stage_setup_s": {
            "handwritten": steps["import_torch"] + steps["handwritten_model_load"],
            "graphops_extra_over_handwritten": steps["import_graphops_offline"]
            + steps["graphops_load_graph"]
            + steps["graphops_plan"]
            + steps["graphops_registry_init"]
            + steps["graphops_model_load"],
        },
        "graphops": {
            "wall_s": wall,
            "pipeline_s": median_of(runs, "pipeline_s"),
            "stage_compute_s": stage,
            "model_stage_compute_share_of_wall": stage.get(MODEL_NODE, 0.0) / wall,
            "reported_rows": {
                "warmup": result["warmup"]["graphops"]["reported_rows"],
                "timed": [r["reported_rows"] for r in runs],
                "expected": rows,
            },
        },
        "timer_round_trips_estimated_s": {
            "batches": batches,
            "model_stage": batches["model_stage"] * trip,
            "cpu_stages": batches["cpu_stages"] * trip,
        },
        "torch_b64_phases_s": {
            k: statistics.median(r["phases_s"][k] for r in torch_runs)
            for k in torch_runs[0]["phases_s"]
        },
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import mlflow
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "torch": torch.__version__,
        "mlflow": mlflow.__version__,
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "graphops_commit": _git("rev-parse", "--short", "HEAD"),
        "working_tree_dirty": bool(_git("status", "--porcelain", "--", "platform", "graphs")),
        "load_average_at_start": os.getloadavg(),
        "note": "2-core VM shared with other work: absolute figures are noisy, ratios less so.",
    }


def _git(*args: str) -> str:
    """Output of a git command in the repository ("" when git is unavailable)."""
    import subprocess

    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return ""
    return done.stdout.strip()


def print_report(result: dict[str, Any]) -> None:
    """A Rich table of the medians and ratios, the targets, the diagnostics and the breakdown."""
    from rich.console import Console
    from rich.table import Table

    rows = result["parameters"]["rows"]
    big, small = str(rows), str(SMALL_ROWS)
    summary = result["summary"]
    table = Table(
        title=f"Offline digits: medians of {result['parameters']['repeats']} "
        f"({result['date']}, {result['machine']['cpu_count']} CPUs, shared)"
    )
    for column in (
        "system",
        f"{rows:,} rows: wall s",
        "rows/s",
        "graphops rows/s ÷ this",
        f"{SMALL_ROWS:,} rows: wall s",
    ):
        table.add_column(column, justify="right")

    def cell(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for system, sizes in summary["medians"].items():
        table.add_row(
            system,
            cell(sizes.get(big, {}).get("wall_s"), ".2f"),
            cell(sizes.get(big, {}).get("rows_per_s"), ",.0f"),
            cell(summary["ratios"]["throughput"].get(f"graphops_vs_{system}"), ".3f"),
            cell(sizes.get(small, {}).get("wall_s"), ".2f"),
        )
    console = Console()
    console.print(table)
    for name, t in summary["targets"].items():
        mark = "[green]met[/]" if t["met"] else "[red]NOT met[/]"
        console.print(
            f"{name}: {t['value']:.3f} median of per-repeat ratios, "
            f"{t['ratio_of_medians']:.3f} ratio of medians (target {t['target']}) {mark}"
        )
    console.print_json(
        json.dumps(
            {
                "diagnostics": summary["diagnostics"],
                "model_stage_batches": result.get("model_stage_batches"),
                "breakdown": result["breakdown"],
            }
        )
    )


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Train, write the inputs, start Ray once, time every system, verify, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="Rows of the throughput run.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed repeats per system.")
    parser.add_argument("--files", type=int, default=8, help="Parquet files the input is split in.")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/offline.json")
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="Also time the hand-written pipeline plus one graphops behaviour at a time, and "
        "Ray Data's read + write floor (datasource V2 vs V1).",
    )
    args = parser.parse_args(argv)
    if args.rows <= SMALL_ROWS:
        parser.error(f"--rows must exceed {SMALL_ROWS}.")
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    started = time.perf_counter()
    big, small = str(args.rows), str(SMALL_ROWS)
    result: dict[str, Any] = {
        "benchmark": "offline throughput, digits graph",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "parameters": {
            "rows": args.rows,
            "small_rows": SMALL_ROWS,
            "repeats": args.repeats,
            "input_files": args.files,
            "diagnose": args.diagnose,
            "torch_threads_in_loop": 1,
            "order": "graphops and handwritten alternate first/second each repeat (with "
            f"--diagnose the runs at {args.rows} rows also rotate), after an untimed warm-up "
            f"run of each on {SMALL_ROWS} rows",
        },
        "setup_s": {},
    }
    with tempfile.TemporaryDirectory(prefix="graphops-bench-") as tmp:
        work = Path(tmp)
        bench = Bench(work, REPO)
        result["parameters"]["stage_cpus"] = bench.cpus
        result["parameters"]["model_batch_size"] = bench.batch_size
        trainer = bench.package.trainer()
        assert trainer is not None, "the digits graph has a train.py"
        t0 = time.perf_counter()
        trainer(bench.registry)
        result["setup_s"]["train_and_register"] = time.perf_counter() - t0
        inputs = {
            big: write_input(
                bench.package.path, work / f"input-{big}.parquet", args.rows, args.files
            ),
            small: write_input(bench.package.path, work / f"input-{small}.parquet", SMALL_ROWS, 1),
        }
        t0 = time.perf_counter()
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level="WARNING",
        )
        result["setup_s"]["ray_init"] = time.perf_counter() - t0
        ray.data.DataContext.get_current().enable_progress_bars = False
        systems: dict[str, Callable[[Path, int], dict[str, Any]]] = {
            "graphops": bench.graphops,
            "handwritten": bench.handwritten,
        }
        diagnostics: dict[str, dict[str, Callable[[Path, int], dict[str, Any]]]] = {
            big: {
                "handwritten_timer": bench.handwritten_timer,
                "handwritten_carry": bench.handwritten_carry,
            },
            small: {
                "read_write_v2": functools.partial(bench.read_write, v2=True),
                "read_write_v1": functools.partial(bench.read_write, v2=False),
            },
        }
        raw: dict[str, dict[str, list[dict[str, Any]]]] = {s: {big: [], small: []} for s in systems}
        for b in TORCH_BATCHES:
            raw[f"torch_b{b}"] = {big: []}
        if args.diagnose:
            raw |= {s: {size: []} for size, runs in diagnostics.items() for s in runs}

        def timed(system: str, size: str, fn: Callable[[Path, int], dict[str, Any]]) -> None:
            raw[system][size].append(fn(inputs[size], int(size)))
            print(
                f"{system:<18} {size:>7} rows: {raw[system][size][-1]['wall_s']:7.2f} s", flush=True
            )

        try:
            result["probe"] = probe(bench)
            result["warmup"] = {s: fn(inputs[small], SMALL_ROWS) for s, fn in systems.items()}
            for repeat in range(args.repeats):
                print(f"-- repeat {repeat + 1}/{args.repeats}", flush=True)
                for size in (big, small):
                    runs = systems | (diagnostics[size] if args.diagnose else {})
                    # graphops and handwritten swap places every repeat; diagnostics rotate too.
                    order = (
                        list(runs) if repeat % 2 == 0 else [*list(systems)[::-1], *list(runs)[2:]]
                    )
                    shift = repeat % len(order) if args.diagnose and size == big else 0
                    for s in order[shift:] + order[:shift]:
                        timed(s, size, runs[s])
                for b in TORCH_BATCHES:
                    timed(f"torch_b{b}", big, functools.partial(bench.torch_loop, batch_size=b))
        finally:
            ray.shutdown()
        if args.diagnose:
            result["model_stage_batches"] = model_stage_batches(bench, inputs[big], args.rows)
        result["verification"] = {
            "throughput_run": verify(_outputs(raw, big), args.rows),
            "fixed_cost_run": verify(
                _outputs(raw, small)
                | {"torch_b64": bench.torch_loop(inputs[small], SMALL_ROWS, 64)["output"]},
                SMALL_ROWS,
            ),
        }
    for record in [
        *result["warmup"].values(),
        *(r for v in raw.values() for rs in v.values() for r in rs),
    ]:
        record.pop("output", None)
    result["raw"] = raw
    result["summary"] = summarize(raw, args.rows)
    result["breakdown"] = breakdown(result, args.rows)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    result["total_s"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_report(result)
    print(f"wrote {args.out}")
    return 0


def _outputs(raw: dict[str, dict[str, list[dict[str, Any]]]], size: str) -> dict[str, str]:
    """The last output written per system at ``size`` rows."""
    return {
        s: sizes[size][-1]["output"]
        for s, sizes in raw.items()
        if "output" in sizes.get(size, [{}])[-1]
    }


if __name__ == "__main__":
    sys.exit(main())
