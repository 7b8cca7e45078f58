"""The floor benchmark's pure parts: the Server-Timing parser and the figures from raw runs."""

from __future__ import annotations

from typing import Any

from benchmarks._load import _timing_summary, server_timing
from benchmarks.floor import markdown, summarize


def test_server_timing_reads_each_phase_and_skips_what_has_no_duration() -> None:
    header = 'read;dur=0.072, parse;dur=0.086, logits;desc="model";dur=0.3, cache, total;dur=0.7'
    assert server_timing(header) == {"read": 0.072, "parse": 0.086, "logits": 0.3, "total": 0.7}
    assert server_timing("") == {}
    summary = _timing_summary([(1.5, {"total": 0.5, "read": 0.1}), (2.5, {"total": 0.5})])
    assert summary["outside_p50_ms"] == 1.5  # client time minus the server's total, median
    assert summary["phases_p50_ms"] == {"read": 0.1, "total": 0.5}


def _run(p50: float, rate: float, phases: dict[str, float] | None = None) -> dict[str, Any]:
    latency: dict[str, Any] = {"p50_ms": p50, "p99_ms": 2 * p50, "errors": 0}
    if phases:
        latency["server_timing"] = {"phases_p50_ms": phases, "outside_p50_ms": p50 - 0.5}
    return {
        "latency": latency,
        "saturated": {"throughput": rate, "p50_ms": 10 * p50, "errors": 0},
        "load_1m": 1.0,
    }


def test_ratios_are_to_the_floor_of_the_same_repeat_and_p1_to_the_serve_app_of_the_same_path() -> (
    None
):
    runs = {
        "digits": {
            "floor": [_run(1.0, 1000), _run(2.0, 500)],
            "serve_direct": [_run(1.5, 600), _run(3.0, 300)],
            "graphops_direct": [_run(2.0, 550, {"total": 1.0}), _run(3.0, 400, {"total": 1.2})],
        }
    }
    result = summarize({"direct": {"mode": "direct", "runs": runs}}, ["digits"])
    graphops = result["graphs"]["digits"]["systems"]["graphops_direct"]
    assert graphops["vs_floor"]["p50"]["per_repeat"] == [2.0, 1.5]
    assert graphops["vs_floor"]["throughput"]["median"] == (0.55 + 0.8) / 2
    assert graphops["phases_p50_ms"]["total"] == 1.1
    assert result["p1"]["digits/direct"]["p50"]["max"] == 2.0 / 1.5
    verdict = result["verdict"]["digits/graphops_direct"]
    assert verdict["p50"]["met"] and verdict["p99"]["met"] and verdict["throughput"]["met"]
    result["parameters"] = {"concurrency": 32}
    table = markdown(result)
    assert "| graphops_direct |" in table and "P1" in table and "outside" in table
