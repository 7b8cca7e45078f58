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
"""

from __future__ import annotations

import argparse
import datetime
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
    import torch
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
    torch.set_grad_enabled(False)
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
        self.runs += 1
        return self.work / "out" / f"{self.runs:03d}-{system}-{rows}.parquet"

    def source(self) -> str:
        """The artifact URI of digits@champion (an MLflow lookup, as a hand-written job does)."""
        uri = self.node.uri  # type: ignore[attr-defined]
        return self.registry.client.get_model_version_by_alias(uri.name, uri.alias).source

    def graphops(self, path: Path, rows: int) -> dict[str, Any]:
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

    def handwritten(self, path: Path, rows: int) -> dict[str, Any]:
        out = self.output("handwritten", rows)
        started = time.perf_counter()
        kwargs = {
            "repo": str(self.repo),
            "source": self.source(),
            "tracking_uri": self.registry.tracking_uri,
        }
        ds = ray.data.read_parquet(str(path))
        ds = ds.map_batches(
            normalize, batch_format="numpy", num_cpus=self.cpus["features"], batch_size=1024
        )
        ds = ds.map_batches(
            ModelActor,
            compute=ray.data.ActorPoolStrategy(size=1),
            num_cpus=self.cpus[MODEL_NODE],
            batch_size=self.batch_size,
            batch_format="numpy",
            fn_constructor_kwargs=kwargs,
        )
        ds = ds.map_batches(
            postprocess, batch_format="numpy", num_cpus=self.cpus["prediction"], batch_size=1024
        )
        ds.write_parquet(str(out))
        return {"wall_s": time.perf_counter() - started, "output": str(out)}

    def torch_loop(self, path: Path, rows: int, batch_size: int) -> dict[str, Any]:
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


# -- where the time goes: a fresh worker process doing what each system's actor does ---------


@ray.remote(num_cpus=0.5)
class Probe:
    """Times, in a fresh Ray worker, each step of building a model stage."""

    def __init__(self) -> None:
        self.born = time.time()

    def born_at(self) -> float:
        return self.born

    def setup(self, repo: str, source: str, tracking_uri: str, work_dir: str) -> dict[str, float]:
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
    from graphops.runtime.offline import _Timer

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
    timer = _Timer.remote()  # type: ignore[attr-defined]
    trips = ray.get(actor.timer_round_trip.remote(timer, TIMER_CALLS))
    ray.kill(actor)
    ray.kill(timer)
    return {
        "actor_start_s": born - submitted,
        "steps_s": steps,
        "timer_round_trip_ms": {
            "median": statistics.median(trips) * 1e3,
            "p90": float(np.percentile(trips, 90)) * 1e3,
            "calls": TIMER_CALLS,
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
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
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
    return statistics.median(r[key] for r in runs)


def summarize(raw: dict[str, dict[str, list[dict[str, Any]]]], rows: int) -> dict[str, Any]:
    """Medians, rows/s, ratios and targets from the raw timings."""
    med = {
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
    throughput = {
        f"graphops_vs_{b}": med["graphops"][big]["rows_per_s"] / med[b][big]["rows_per_s"]
        for b in raw
        if b != "graphops"
    }
    fixed = med["graphops"][small]["wall_s"] / med["handwritten"][small]["wall_s"]
    marginal = [med[s]["marginal_rows_per_s"] for s in SYSTEMS]
    targets = {
        "throughput_vs_handwritten": {
            "target": f">= {TARGETS['throughput']}",
            "value": throughput["graphops_vs_handwritten"],
            "met": throughput["graphops_vs_handwritten"] >= TARGETS["throughput"],
        },
        "fixed_cost_vs_handwritten": {
            "target": f"<= {TARGETS['fixed_cost']}",
            "value": fixed,
            "met": fixed <= TARGETS["fixed_cost"],
        },
    }
    ratios = {
        "throughput": throughput,
        "fixed_cost_graphops_vs_handwritten": fixed,
        "marginal_throughput_graphops_vs_handwritten": marginal[0] / marginal[1]
        if all(marginal)
        else None,
    }
    return {"medians": med, "ratios": ratios, "targets": targets}


def breakdown(raw: dict[str, Any], rows: int, probed: dict[str, Any]) -> dict[str, Any]:
    """Where graphops' wall time goes, from its own stage timer and the probe."""
    runs = raw["graphops"][str(rows)]
    stage = {
        name: statistics.median(r["stage_seconds"][name] for r in runs)
        for name in runs[0]["stage_seconds"]
    }
    wall = median_of(runs)
    batches = {
        "model_stage": -(-rows // 64),
        "cpu_stages": 2 * -(-rows // 1024),
    }
    trip = probed["timer_round_trip_ms"]["median"] / 1e3
    return {
        "graphops_wall_s": wall,
        "graphops_pipeline_s": median_of(runs, "pipeline_s"),
        "graphops_stage_compute_s": stage,
        "graphops_model_stage_share_of_wall": stage.get(MODEL_NODE, 0.0) / wall,
        "graphops_reported_rows": [r["reported_rows"] for r in runs],
        "batches_at_least": batches,
        "timer_round_trips_estimated_s": {
            "model_stage": batches["model_stage"] * trip,
            "cpu_stages": batches["cpu_stages"] * trip,
        },
        "torch_b64_phases_s": {
            k: statistics.median(r["phases_s"][k] for r in raw["torch_b64"][str(rows)])
            for k in raw["torch_b64"][str(rows)][0]["phases_s"]
        },
    }


def machine() -> dict[str, Any]:
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
        "load_average_at_start": os.getloadavg(),
        "note": "2-core VM shared with other work: absolute figures are noisy, ratios less so.",
    }


def print_report(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = result["parameters"]["rows"]
    med = result["summary"]["medians"]
    ratios = result["summary"]["ratios"]["throughput"]
    table = Table(
        title=f"Offline digits, {rows:,} rows, median of {result['parameters']['repeats']}"
    )
    for column in ("system", "wall s", "rows/s", "graphops / this", f"{SMALL_ROWS:,} rows: wall s"):
        table.add_column(column, justify="right")
    for system, sizes in med.items():
        big = sizes[str(rows)]
        small = sizes.get(str(SMALL_ROWS))
        ratio = ratios.get(f"graphops_vs_{system}")
        table.add_row(
            system,
            f"{big['wall_s']:.2f}",
            f"{big['rows_per_s']:,.0f}",
            "-" if ratio is None else f"{ratio:.3f}",
            "-" if small is None else f"{small['wall_s']:.2f}",
        )
    console = Console()
    console.print(table)
    for name, t in result["summary"]["targets"].items():
        mark = "[green]met[/]" if t["met"] else "[red]NOT met[/]"
        console.print(f"{name}: {t['value']:.3f} (target {t['target']}) {mark}")
    console.print_json(json.dumps({"setup_s": result["setup_s"], "breakdown": result["breakdown"]}))


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="Rows of the throughput run.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed repeats per system.")
    parser.add_argument("--files", type=int, default=8, help="Parquet files the input is split in.")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/offline.json")
    args = parser.parse_args(argv)
    if args.rows <= SMALL_ROWS:
        parser.error(f"--rows must exceed {SMALL_ROWS}.")
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "offline throughput, digits graph",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "parameters": {
            "rows": args.rows,
            "small_rows": SMALL_ROWS,
            "repeats": args.repeats,
            "input_files": args.files,
            "torch_threads_in_loop": 1,
            "order": "graphops and handwritten alternate first/second each repeat, after a "
            f"warm-up run of each on {SMALL_ROWS} rows",
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
            str(n): write_input(bench.package.path, work / f"input-{n}.parquet", n, files)
            for n, files in ((args.rows, args.files), (SMALL_ROWS, 1))
        }
        t0 = time.perf_counter()
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level="WARNING",
        )
        result["setup_s"]["ray_init"] = time.perf_counter() - t0
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        try:
            result["probe"] = probe(bench)
            small = inputs[str(SMALL_ROWS)]
            result["warmup_1k_wall_s"] = {
                s: getattr(bench, s)(small, SMALL_ROWS)["wall_s"] for s in SYSTEMS
            }
            raw: dict[str, dict[str, list[dict[str, Any]]]] = {
                s: {str(args.rows): [], str(SMALL_ROWS): []} for s in SYSTEMS
            }
            for b in TORCH_BATCHES:
                raw[f"torch_b{b}"] = {str(args.rows): []}
            for repeat in range(args.repeats):
                order = SYSTEMS if repeat % 2 == 0 else SYSTEMS[::-1]
                for size in (str(args.rows), str(SMALL_ROWS)):
                    for s in order:
                        raw[s][size].append(getattr(bench, s)(inputs[size], int(size)))
                        print(
                            f"repeat {repeat} {s:<12} {size:>7} rows: {raw[s][size][-1]['wall_s']:.2f} s"
                        )
                for b in TORCH_BATCHES:
                    run = bench.torch_loop(inputs[str(args.rows)], args.rows, b)
                    raw[f"torch_b{b}"][str(args.rows)].append(run)
                    print(
                        f"repeat {repeat} torch_b{b:<6} {args.rows:>7} rows: {run['wall_s']:.2f} s"
                    )
        finally:
            ray.shutdown()
        last = {s: sizes[str(args.rows)][-1]["output"] for s, sizes in raw.items()}
        result["verification"] = {
            "throughput_run": verify(last, args.rows),
            "fixed_cost_run": verify(
                {s: raw[s][str(SMALL_ROWS)][-1]["output"] for s in SYSTEMS}
                | {"torch_b64": _torch_small(bench, small)},
                SMALL_ROWS,
            ),
        }
    for sizes in raw.values():
        for runs in sizes.values():
            for r in runs:
                r.pop("output")
    result["raw"] = raw
    result["summary"] = summarize(raw, args.rows)
    result["breakdown"] = breakdown(raw, args.rows, result["probe"])
    result["machine"]["load_average_at_end"] = os.getloadavg()
    result["total_s"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_report(result)
    print(f"wrote {args.out}")
    return 0


def _torch_small(bench: Bench, path: Path) -> str:
    """The torch loop's output on the small input, the reference for the fixed-cost check."""
    return bench.torch_loop(path, SMALL_ROWS, 64)["output"]


if __name__ == "__main__":
    sys.exit(main())
