"""Per-arm counters and their figures, as pure functions: count, merge, subtract, summarize.

What a split counts per arm (`ArmCounters`) is a dict of mergeable raw counters (`Raw`): requests,
rows, errors, a latency histogram, the main output's distribution, and for a mirror the rows
compared with the answer given and those that agreed. Replicas add theirs up (`merge`), readers
take the difference of two readings (`delta`) and turn it into figures (`figures_of`, `summary`,
`rates`). No Ray and no other runtime module: the controller imports this one to judge steps.
"""

from __future__ import annotations

import bisect
import copy
import json
import math
from typing import Any

from graphops.runtime.split import ArmFigures

Raw = dict[str, Any]
"""Raw counters of one arm (`ArmCounters.state`): only ever added to, so two readings subtract."""

LATENCY_BOUNDS_MS = tuple(round(0.25 * 1.15**i, 3) for i in range(80))
"""Upper bounds of the latency histogram buckets (0.25 ms .. ~17 s, 15% apart)."""

MAX_CATEGORIES = 20
"""Distinct values of a categorical output counted per arm; the rest count as "other"."""

_COUNTS = ("requests", "rows", "errors", "compared", "agreed")


class ArmCounters:
    """Counters of one arm (or a mirror) in one replica; merged across replicas as `Raw`."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Zero every counter (at start, and after a flush)."""
        self.requests = 0
        self.rows = 0
        self.errors = 0
        self.latency = [0] * (len(LATENCY_BOUNDS_MS) + 1)
        self.categories: dict[str, int] = {}
        # n, sum, sum of squares, min, max (None until a value: JSON has no infinity)
        self.numeric: list[Any] = [0, 0.0, 0.0, None, None]
        self.compared = 0
        self.agreed = 0

    def record(self, ms: float, status: int, rows: int, outputs: list[Any]) -> None:
        """One answered request: its latency, status (0: no answer), rows and main outputs."""
        self.requests += 1
        self.rows += rows
        self.errors += status >= 500 or status == 0
        self.latency[bisect.bisect_left(LATENCY_BOUNDS_MS, ms)] += 1
        for value in outputs:
            if isinstance(value, bool) or not isinstance(value, int | float):
                key = json.dumps(value)[:40]
                if key in self.categories or len(self.categories) < MAX_CATEGORIES:
                    self.categories[key] = self.categories.get(key, 0) + 1
                else:
                    self.categories["other"] = self.categories.get("other", 0) + 1
            elif isinstance(value, int):
                self.categories[str(value)] = self.categories.get(str(value), 0) + 1
            else:
                n = self.numeric
                n[0] += 1
                n[1] += value
                n[2] += value * value
                n[3] = value if n[3] is None else min(n[3], value)
                n[4] = value if n[4] is None else max(n[4], value)

    def state(self) -> Raw:
        """Mergeable raw counters."""
        return {
            "requests": self.requests,
            "rows": self.rows,
            "errors": self.errors,
            "latency": list(self.latency),
            "categories": dict(self.categories),
            "numeric": list(self.numeric),
            "compared": self.compared,
            "agreed": self.agreed,
        }


def empty() -> Raw:
    """Raw counters of an arm that answered nothing yet."""
    return ArmCounters().state()


def merge(into: Raw, part: Raw) -> Raw:
    """Add the raw counters ``part`` to ``into`` (``into`` may be empty: a copy of ``part``)."""
    if not into:
        return copy.deepcopy(part)
    for key in _COUNTS:
        into[key] += part[key]
    into["latency"] = [a + b for a, b in zip(into["latency"], part["latency"], strict=True)]
    for k, v in part["categories"].items():
        into["categories"][k] = into["categories"].get(k, 0) + v
    a, b = into["numeric"], part["numeric"]
    into["numeric"] = [
        a[0] + b[0],
        a[1] + b[1],
        a[2] + b[2],
        _least(a[3], b[3], min),
        _least(a[4], b[4], max),
    ]
    return into


def _least(a: float | None, b: float | None, pick: Any) -> float | None:
    """``pick(a, b)`` of two bounds either of which may be None (no value yet)."""
    return b if a is None else a if b is None else pick(a, b)


def delta(after: Raw, before: Raw | None) -> Raw:
    """Raw counters added between two readings of the same totals (``before`` None: all).

    Counts and histograms only grow, so the difference is what happened in between; min/max of
    numeric outputs cannot be subtracted and are kept from ``after``.
    """
    out = copy.deepcopy(after)
    if not before:
        return out
    for key in _COUNTS:
        out[key] = after[key] - before[key]
    out["latency"] = [a - b for a, b in zip(after["latency"], before["latency"], strict=True)]
    out["categories"] = {
        k: v - before["categories"].get(k, 0)
        for k, v in after["categories"].items()
        if v - before["categories"].get(k, 0)
    }
    a, b = after["numeric"], before["numeric"]
    out["numeric"] = [a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3], a[4]]
    return out


def percentile(histogram: list[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a latency histogram in ms (its bucket's upper bound)."""
    total = sum(histogram)
    if not total:
        return None
    rank, seen = q * total, 0
    for i, count in enumerate(histogram):
        seen += count
        if seen >= rank and count:
            return LATENCY_BOUNDS_MS[min(i, len(LATENCY_BOUNDS_MS) - 1)]
    return LATENCY_BOUNDS_MS[-1]


def figures_of(raw: Raw) -> ArmFigures:
    """What a rollout step is judged on: requests, errors, error rate, p50/p99, agreement."""
    requests, errors = int(raw["requests"]), int(raw["errors"])
    return ArmFigures(
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else 0.0,
        p50_ms=percentile(raw["latency"], 0.5),
        p99_ms=percentile(raw["latency"], 0.99),
        compared=int(raw["compared"]),
        agreed=int(raw["agreed"]),
    )


def summary(raw: Raw) -> dict[str, Any]:
    """Readable figures of raw counters: requests, rows, errors, percentiles, outputs, agreement."""
    n, total, squares, low, high = raw["numeric"]
    out: dict[str, Any] = {
        "requests": raw["requests"],
        "rows": raw["rows"],
        "errors": raw["errors"],
        "error_rate": raw["errors"] / raw["requests"] if raw["requests"] else 0.0,
        "p50_ms": percentile(raw["latency"], 0.5),
        "p95_ms": percentile(raw["latency"], 0.95),
        "p99_ms": percentile(raw["latency"], 0.99),
    }
    if raw["categories"]:
        counted = sum(raw["categories"].values())
        out["output"] = {
            k: v / counted for k, v in sorted(raw["categories"].items(), key=lambda kv: -kv[1])
        }
    if n:
        mean = total / n
        out["output_numeric"] = {
            "n": n,
            "mean": mean,
            "std": math.sqrt(max(squares / n - mean * mean, 0.0)),
            "min": low,
            "max": high,
        }
    if raw["compared"]:
        out["agreement"] = raw["agreed"] / raw["compared"]
        out["compared"] = raw["compared"]
    return out


def rates(raw: Raw, seconds: float) -> dict[str, Any]:
    """Live figures of raw counters gathered over ``seconds``: rps, error rate, p50/p99 (ms)."""
    figures = figures_of(raw)
    return {
        "requests": figures.requests,
        "errors": figures.errors,
        "rps": figures.requests / seconds if seconds > 0 else 0.0,
        "error_rate": figures.error_rate,
        "p50_ms": figures.p50_ms,
        "p99_ms": figures.p99_ms,
    }


__all__ = [
    "LATENCY_BOUNDS_MS",
    "MAX_CATEGORIES",
    "ArmCounters",
    "Raw",
    "delta",
    "empty",
    "figures_of",
    "merge",
    "percentile",
    "rates",
    "summary",
]
