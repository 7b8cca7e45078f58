"""Offline throughput of graphops' Ray Data runtime on the digits graph, against two baselines.

Every system does the same work: read Parquet, scale pixels 0..16 to 0..1, run DigitsNet,
softmax to a label and a confidence, write Parquet (carrying the ``row`` and ``digit`` columns).

- ``graphops``: `graphops.runtime.offline.run_offline` on the graph's plan.
- ``handwritten``: the Ray Data pipeline an expert writes by hand (`benchmarks._baselines.EXPERT`:
  the V1 Parquet reader, 2 read blocks per CPU, one actor operator doing the whole per-row work,
  explicit fractional CPUs). The targets compare graphops against it.
- ``handwritten_default_reader``: the former baseline, a labelled extra row: the operators,
  resources and batch sizes graphops declares (read -> 3 x ``map_batches`` -> write) on Ray
  Data's defaults (datasource V2, 200 read blocks).
- ``torch_b64`` / ``torch_b1024``: a plain in-process loop (pyarrow, numpy, torch on one thread,
  the one CPU Ray gives the model stage) in batches of 64 (the model node's batch size) and 1024.

The machine is small and shared, so every figure is a ratio to a baseline measured in the same
process, with repeats and medians (graphops and the hand-written pipeline alternate their order).
Run it with ``nox -s bench`` or::

    python -m benchmarks.offline --rows 200000 --repeats 3 --out benchmarks/results/offline.json

``--diagnose`` adds what explains the gap between graphops and the hand-written pipeline: that
pipeline plus one graphops behaviour at a time, Ray Data's read + write floor (datasource V2 vs
V1), and the model stage's per-batch work measured in-process. See docs/performance.md.

This module is the harness (input, verification, the timed loop, the CLI); the systems are in
`benchmarks._baselines`, the probes in `_probes`, the figures in `_stats`, the report in `_report`.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import logging
import os
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

from benchmarks._baselines import EXPERT, LEVERS, Bench
from benchmarks._probes import model_stage_batches, probe
from benchmarks._report import REPO, machine, print_report, utc_now, write_json
from benchmarks._stats import SMALL_ROWS, breakdown, summarize
from graphops.runtime.online import init_local

CHECK_ROWS = 1_000
TORCH_BATCHES = (64, 1024)


# -- input and checks ----------------------------------------------------------------------------


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


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Train, write the inputs, start Ray once, time every system, verify, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="Rows of the throughput run.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed repeats per system.")
    parser.add_argument("--files", type=int, default=8, help="Parquet files the input is split in.")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/offline.json")
    parser.add_argument(
        "--huge-rows",
        type=int,
        default=1_000_000,
        help="Rows of the second throughput point (graphops, hand-written, torch); 0: none.",
    )
    parser.add_argument(
        "--levers",
        action="store_true",
        help="Also time graphops with one offline lever off at a time (co-location, pool "
        "size, read blocks, offline batch size, datasource V1), at --rows rows.",
    )
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
    huge = str(args.huge_rows) if args.huge_rows else None
    result: dict[str, Any] = {
        "benchmark": "offline throughput, digits graph",
        "date": utc_now(),
        "machine": machine(),
        "parameters": {
            "rows": args.rows,
            "small_rows": SMALL_ROWS,
            "repeats": args.repeats,
            "input_files": args.files,
            "huge_rows": args.huge_rows,
            "levers": args.levers,
            "diagnose": args.diagnose,
            "torch_threads_in_loop": 1,
            "expert_pipeline": EXPERT,
            "order": "graphops, handwritten and handwritten_default_reader reverse their order "
            "each repeat (with "
            f"--diagnose or --levers the runs at {args.rows} rows also rotate), after an "
            f"untimed warm-up run of each on {SMALL_ROWS} rows",
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
            **(
                {
                    huge: write_input(
                        bench.package.path, work / "input-huge.parquet", args.huge_rows, args.files
                    )
                }
                if huge
                else {}
            ),
            big: write_input(
                bench.package.path, work / f"input-{big}.parquet", args.rows, args.files
            ),
            small: write_input(bench.package.path, work / f"input-{small}.parquet", SMALL_ROWS, 1),
        }
        t0 = time.perf_counter()
        init_local(2, logging_level="WARNING")  # as graphops starts its own: loopback only
        result["setup_s"]["ray_init"] = time.perf_counter() - t0
        ray.data.DataContext.get_current().enable_progress_bars = False
        systems: dict[str, Callable[[Path, int], dict[str, Any]]] = {
            "graphops": bench.graphops,
            "handwritten": bench.handwritten,
            "handwritten_default_reader": bench.handwritten_default_reader,
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
        if args.levers:
            diagnostics[big] |= {
                f"graphops_{lever}": functools.partial(bench.graphops, lever=lever)
                for lever in LEVERS
            }
        sizes = [s for s in (huge, big, small) if s]
        raw: dict[str, dict[str, list[dict[str, Any]]]] = {
            s: {size: [] for size in sizes} for s in systems
        }
        for b in TORCH_BATCHES:
            raw[f"torch_b{b}"] = {size: [] for size in sizes if size != small}
        extra = args.diagnose or args.levers
        for size, runs in diagnostics.items():
            for s in list(runs):
                wanted = args.levers if s.startswith("graphops_") else args.diagnose
                if wanted:
                    raw.setdefault(s, {})[size] = []
                else:
                    del runs[s]

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
                for size in sizes:
                    runs = systems | diagnostics.get(size, {})
                    # the systems reverse their order every repeat; diagnostics rotate too.
                    order = (
                        list(runs)
                        if repeat % 2 == 0
                        else [*list(systems)[::-1], *list(runs)[len(systems) :]]
                    )
                    shift = repeat % len(order) if extra and size == big else 0
                    for s in order[shift:] + order[:shift]:
                        timed(s, size, runs[s])
                    if size == small:
                        continue
                    for b in TORCH_BATCHES:
                        timed(
                            f"torch_b{b}", size, functools.partial(bench.torch_loop, batch_size=b)
                        )
        finally:
            ray.shutdown()
        if args.diagnose:
            result["model_stage_batches"] = model_stage_batches(bench, inputs[big], args.rows)
        result["verification"] = {
            **({"huge_run": verify(_outputs(raw, huge), args.huge_rows)} if huge else {}),
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
    result["summary"] = summarize(raw, args.rows, args.huge_rows or None)
    result["breakdown"] = breakdown(result, args.rows)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    result["total_s"] = time.perf_counter() - started
    write_json(args.out, result)
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
