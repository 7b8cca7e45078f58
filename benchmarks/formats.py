"""Model formats: the same model node run in each registered format, in-process and on Ray Data.

Each case is a (graph, node, alias) triple: the node's model is loaded at that alias by the
registry (digest verified, format detected) and measured

- in-process, the model stage alone: p50 and p99 latency of one call on a single row and on a
  batch of the node's ``max_batch_size`` rows, and rows/s on batches of the offline batch size;
- offline: the whole graph on Ray Data (`run_offline`), its model node pinned to that version,
  over the validation rows tiled to ``--rows`` rows.

Cases alternate their order every repeat; figures are medians with their spread (min..max), and
ratios against the case's reference (the first case of the same graph and node, torch) are
medians of per-repeat ratios, each measured in the same repeat. Serve's online path is not timed
here: a model call is well under a millisecond, below Serve's own per-request cost (see
docs/performance.md's online figures). Add cases to `CASES` (e.g. the text graph's torch vs
ONNX) once their models are registered by the setup. Run it with ``nox -s bench -- formats`` or::

    python -m benchmarks.formats --repeats 3 --out benchmarks/results/formats.json
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import REPO, machine, utc_now, write_json


@dataclass(frozen=True)
class Case:
    """One measured model: a graph's model node at one alias."""

    graph: str
    node: str
    alias: str

    @property
    def key(self) -> str:
        """``graph.node@alias``."""
        return f"{self.graph}.{self.node}@{self.alias}"


CASES = [
    Case("digits", "logits", "champion"),  # torch (graphops' safetensors layout): the reference
    Case("digits", "logits", "champion-onnx"),  # ONNX Runtime, exported by `graphops export onnx`
    Case("fraud", "fraud_probability", "champion"),  # XGBoost (MLflow's xgboost flavor)
    Case("support_tickets", "logits", "champion"),  # transformers (MLflow's transformers flavor)
]
"""What is measured; the first case of each (graph, node) is the reference of its ratios."""


def prepare(repo: Path, registry: Any) -> dict[str, Any]:
    """Train each case's graph and export its ONNX versions (seconds per step)."""
    from graphops.graph import load_graph
    from graphops.validation.conversion import export_onnx

    spent: dict[str, Any] = {}
    for graph in dict.fromkeys(c.graph for c in CASES):
        package = load_graph(repo, graph)
        trainer = package.trainer()
        assert trainer is not None, f"{graph} has a train.py"
        started = time.perf_counter()
        trainer(registry)
        spent[f"train_{graph}"] = time.perf_counter() - started
    for case in CASES:
        if case.alias.endswith("-onnx"):
            started = time.perf_counter()
            done = export_onnx(load_graph(repo, case.graph), case.node, registry, alias=case.alias)
            assert done.parity.passed, done.parity
            spent[f"export_{case.key}"] = time.perf_counter() - started
            spent[f"parity_{case.key}"] = done.parity.model_dump()
    return spent


def latency(call: Callable[[], Any], calls: int) -> dict[str, float]:
    """p50/p99 milliseconds of ``calls`` calls (after 20 untimed ones)."""
    for _ in range(20):
        call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1e3)
    times.sort()
    return {
        "p50_ms": times[len(times) // 2],
        "p99_ms": times[min(len(times) - 1, calls * 99 // 100)],
    }


def in_process(
    model: Any, features: np.ndarray, batch: int, offline: int, calls: int
) -> dict[str, Any]:
    """The model stage alone: one row, one online batch, and offline-sized batches' rows/s."""
    one, online = features[:1], np.resize(features, (batch, *features.shape[1:]))
    big = np.resize(features, (offline, *features.shape[1:]))
    result: dict[str, Any] = {
        "single_row": latency(lambda: model(one), calls),
        "batch": latency(lambda: model(online), calls // 4),  # the node's max_batch_size rows
    }
    model(big)
    started, rounds = time.perf_counter(), 0
    while time.perf_counter() - started < 1.0:
        model(big)
        rounds += 1
    result["offline_batch_rows_per_s"] = rounds * offline / (time.perf_counter() - started)
    return result


def text_onnx(model: Any, texts: np.ndarray, folder: Path, calls: int) -> dict[str, Any]:
    """The text model as torch and as ONNX Runtime on the same tokenized texts, in-process.

    Both include the tokenizer (a Python step either way); the ONNX model is the transformers
    format's own export (`graphops.models.transformers.export_onnx`), dynamic batch and length.
    """
    import onnxruntime as ort

    from graphops.models.transformers import export_onnx

    path = export_onnx(model, folder / "text.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def onnx_call(batch: np.ndarray) -> np.ndarray:
        encoded = model.encode(batch)
        feeds = {k: v.numpy() for k, v in encoded.items() if k in ("input_ids", "attention_mask")}
        return session.run(None, feeds)[0]

    one, online = texts[:1], np.resize(texts, (32,))
    diff = float(np.max(np.abs(onnx_call(texts[:256]) - model(texts[:256]))))
    return {
        "max_abs_diff": diff,
        "torch": {
            "single_row": latency(lambda: model(one), calls // 4),
            "batch_32": latency(lambda: model(online), calls // 20),
        },
        "onnx": {
            "single_row": latency(lambda: onnx_call(one), calls // 4),
            "batch_32": latency(lambda: onnx_call(online), calls // 20),
        },
    }


def tiled(package: Any, rows: int, folder: Path) -> Path:
    """The validation rows tiled to ``rows`` rows, one Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(package.validation_dataset)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"input-{rows}.parquet"
    pq.write_table(table.take(pa.array(np.arange(rows) % table.num_rows)), path)
    return path


def summarize(raw: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians, spreads and per-repeat ratios against each case's reference."""
    figures: dict[str, Callable[[dict[str, Any]], float]] = {}
    first = next(iter(raw.values()))[0]
    for part, value in first["in_process"].items():
        if isinstance(value, dict):
            for stat in value:
                figures[f"in_process.{part}.{stat}"] = lambda r, p=part, s=stat: r["in_process"][p][
                    s
                ]
        else:
            figures[f"in_process.{part}"] = lambda r, p=part: r["in_process"][p]
    figures["offline.rows_per_s"] = lambda r: r["offline"]["rows_per_s"]
    figures["offline.model_stage_s"] = lambda r: r["offline"]["model_stage_s"]
    out: dict[str, Any] = {}
    references = {}
    for case in CASES:
        references.setdefault((case.graph, case.node), case.key)
    for case in CASES:
        runs = raw[case.key]
        ref = raw[references[(case.graph, case.node)]]
        entry: dict[str, Any] = {
            key: runs[0][key] for key in ("format", "version", "batch_rows", "offline_batch_rows")
        }
        for name, get in figures.items():
            values = [get(r) for r in runs]
            ratios = [get(r) / get(b) for r, b in zip(runs, ref, strict=True)]
            entry[name] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "vs_reference": statistics.median(ratios),
                "vs_reference_per_repeat": ratios,
            }
        out[case.key] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    """Set up, measure every case each repeat (order alternating), summarize, write."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=50_000, help="Rows of each offline run.")
    parser.add_argument(
        "--calls", type=int, default=2_000, help="Single-row calls per latency run."
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/formats.json")
    args = parser.parse_args(argv)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    began = time.perf_counter()

    import ray
    import torch

    import graphops.models  # noqa: F401  (the formats register)
    from graphops.graph import ModelNode, load_graph
    from graphops.registry import Registry
    from graphops.runtime.offline import run_offline
    from graphops.runtime.online import init_local
    from graphops.validation.conversion import node_inputs

    torch.set_num_threads(1)  # as the model stage gets on Ray (1 CPU); ONNX sessions use 1 too
    result: dict[str, Any] = {
        "benchmark": "model formats: the same model node per format, in-process and offline",
        "date": utc_now(),
        "machine": machine(),
        "parameters": vars(args) | {"out": str(args.out), "cases": [c.key for c in CASES]},
    }
    with tempfile.TemporaryDirectory(prefix="graphops-bench-formats-") as tmp:
        work = Path(tmp)
        shutil.copytree(
            REPO / "graphs", work / "graphs", ignore=shutil.ignore_patterns("__pycache__")
        )
        registry = Registry(work / ".graphops")
        result["setup_s"] = prepare(work, registry)
        packages = {g: load_graph(work, g) for g in dict.fromkeys(c.graph for c in CASES)}
        loaded, features, pins, inputs = {}, {}, {}, {}
        for case in CASES:
            package = packages[case.graph]
            node = package.graph.node(case.node)
            assert isinstance(node, ModelNode)
            pins[case.key] = registry.resolve(f"models:/{node.uri.name}@{case.alias}")
            loaded[case.key] = (node, registry.load(node, pins[case.key]))
            if case.graph not in inputs:
                inputs[case.graph] = tiled(package, args.rows, work / case.graph)
            if (case.graph, case.node) not in features:
                columns = node_inputs(package, registry, node)
                features[(case.graph, case.node)] = columns[node.inputs[0]]
        started = time.perf_counter()
        init_local(2, logging_level="WARNING")
        result["setup_s"]["ray_init"] = time.perf_counter() - started
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
        raw: dict[str, list[dict[str, Any]]] = {c.key: [] for c in CASES}
        try:
            for repeat in range(args.repeats):
                order = CASES if repeat % 2 == 0 else CASES[::-1]
                print(
                    f"-- repeat {repeat + 1}/{args.repeats}: {', '.join(c.key for c in order)}",
                    flush=True,
                )
                for case in order:
                    node, model = loaded[case.key]
                    package = packages[case.graph]
                    record: dict[str, Any] = {
                        "format": type(model).__name__.removesuffix("Model").lower(),
                        "version": pins[case.key].uri,
                        "batch_rows": node.batching.max_batch_size,
                        "offline_batch_rows": node.batching.offline_rows,
                        "in_process": in_process(
                            model,
                            features[(case.graph, case.node)],
                            node.batching.max_batch_size,
                            node.batching.offline_rows,
                            args.calls,
                        ),
                    }
                    t0 = time.perf_counter()
                    run = run_offline(
                        package, registry, inputs[case.graph], pins={node.name: pins[case.key]}
                    )
                    wall = time.perf_counter() - t0
                    assert run.rows == args.rows, run.rows
                    record["offline"] = {
                        "wall_s": wall,
                        "rows_per_s": args.rows / wall,
                        "stage_seconds": run.stage_seconds,
                        # compute seconds of the model node's stage, summed over its actors
                        "model_stage_s": run.stage_seconds.get(node.name, float("nan")),
                    }
                    if case.graph == "support_tickets":
                        record["text_onnx"] = text_onnx(
                            model, features[(case.graph, case.node)], work, args.calls
                        )
                    raw[case.key].append(record)
                    ip = record["in_process"]
                    print(
                        f"{case.key:<32} 1 row p50 {ip['single_row']['p50_ms']:.3f} ms, "
                        f"offline {record['offline']['rows_per_s']:,.0f} rows/s",
                        flush=True,
                    )
        finally:
            ray.shutdown()
    result["raw"] = raw
    result["summary"] = summarize(raw)
    texts = [r["text_onnx"] for runs in raw.values() for r in runs if "text_onnx" in r]
    if texts:
        result["text_onnx"] = {
            "max_abs_diff": max(t["max_abs_diff"] for t in texts),
            **{
                f"{impl}.{part}.p50_ms": statistics.median(t[impl][part]["p50_ms"] for t in texts)
                for impl in ("torch", "onnx")
                for part in ("single_row", "batch_32")
            },
            **{
                f"onnx_vs_torch.{part}": statistics.median(
                    t["onnx"][part]["p50_ms"] / t["torch"][part]["p50_ms"] for t in texts
                )
                for part in ("single_row", "batch_32")
            },
        }
    result["machine"]["load_average_at_end"] = os.getloadavg()
    result["total_s"] = time.perf_counter() - began
    write_json(args.out, result)
    _print(result)
    print(f"wrote {args.out}")
    return 0


def _print(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Model formats, medians of {result['parameters']['repeats']} ({result['date']})"
    )
    for column in (
        "case",
        "format",
        "1 row p50 ms",
        "batch p50 ms",
        "model rows/s",
        "offline rows/s",
        "offline ÷ ref",
        "model stage s",
        "stage ÷ ref",
    ):
        table.add_column(column, justify="right")
    for key, s in result["summary"].items():
        batch, rows = "in_process.batch.p50_ms", "in_process.offline_batch_rows_per_s"
        table.add_row(
            key,
            s["format"],
            f"{s['in_process.single_row.p50_ms']['median']:.3f}",
            f"{s[batch]['median']:.3f}",
            f"{s[rows]['median']:,.0f}",
            f"{s['offline.rows_per_s']['median']:,.0f}",
            f"{s['offline.rows_per_s']['vs_reference']:.2f}",
            f"{s['offline.model_stage_s']['median']:.3f}",
            f"{s['offline.model_stage_s']['vs_reference']:.2f}",
        )
    Console(width=160).print(table)
    text = result.get("text_onnx")
    if text:
        Console(width=160).print(
            "support_tickets in-process, tokenizer included: torch 1 text p50 "
            f"{text['torch.single_row.p50_ms']:.3f} ms, ONNX Runtime "
            f"{text['onnx.single_row.p50_ms']:.3f} ms ({text['onnx_vs_torch.single_row']:.2f}x); "
            f"32 texts {text['torch.batch_32.p50_ms']:.3f} vs {text['onnx.batch_32.p50_ms']:.3f} ms "
            f"({text['onnx_vs_torch.batch_32']:.2f}x); max abs diff {text['max_abs_diff']:.2g}"
        )


if __name__ == "__main__":
    sys.exit(main())
