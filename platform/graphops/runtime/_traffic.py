"""Traffic between graph versions, as pure functions: arm choice, stickiness, per-arm statistics.

The router deployment (`graphops.runtime.router`) calls these; unit tests call them directly.
The router's configuration itself (`RouterConfig`, its arms and shadow) is public, in
`graphops.runtime.schema`.
An arm is chosen by hashing the sticky key's value into one of 10,000 buckets laid out by the
arms' cumulative weights, so the same value always lands on the same arm, and a weight change
moves only the keys of the buckets that change hands.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import math
import random
from typing import Any

from graphops.runtime.schema import RouterConfig

BUCKETS = 10_000
"""Resolution of the weights: 0.01 percentage points."""

LATENCY_BOUNDS_MS = tuple(round(0.25 * 1.15**i, 3) for i in range(80))
"""Upper bounds of the latency histogram buckets (0.25 ms .. ~17 s, 15% apart)."""

MAX_CATEGORIES = 20
"""Distinct values of a categorical output counted per arm; the rest count as "other"."""


class Picker:
    """Chooses an arm per sticky-key value (or at random without one)."""

    def __init__(self, config: RouterConfig) -> None:
        self.arms = [a for a in config.arms if a.weight > 0] or list(config.arms)
        total = sum(a.weight for a in self.arms) or 1.0
        edges, acc = [], 0.0
        for arm in self.arms:
            acc += arm.weight
            edges.append(round(acc / total * BUCKETS))
        edges[-1] = BUCKETS
        self.edges = edges
        self.salt = config.experiment.encode()

    def bucket(self, key: Any) -> int:
        """The bucket (0..9999) of a sticky-key value: stable across processes and restarts."""
        text = key if isinstance(key, str) else json.dumps(key, sort_keys=True)
        digest = hashlib.blake2b(text.encode(), digest_size=8, key=self.salt[:64]).digest()
        return int.from_bytes(digest, "big") % BUCKETS

    def pick(self, key: Any = None) -> int:
        """Index of the arm for ``key``; a random arm (by weight) when ``key`` is None."""
        bucket = random.randrange(BUCKETS) if key is None else self.bucket(key)
        return bisect.bisect_right(self.edges, bucket)


class ArmStats:
    """Counters of one arm (or the shadow) in one router replica; merged across replicas."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Zero every counter (at start, and after a flush)."""
        self.requests = 0
        self.rows = 0
        self.errors = 0
        self.latency = [0] * (len(LATENCY_BOUNDS_MS) + 1)
        self.categories: dict[str, int] = {}
        self.numeric = [0, 0.0, 0.0, math.inf, -math.inf]  # n, sum, sum of squares, min, max
        self.compared = 0
        self.agreed = 0

    def record(self, ms: float, status: int, rows: int, outputs: list[Any]) -> None:
        """One answered request: its latency, status, rows and main output values."""
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
                n[3] = min(n[3], value)
                n[4] = max(n[4], value)

    def state(self) -> dict[str, Any]:
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


def merge(into: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """Add the raw counters ``part`` to ``into`` (both `ArmStats.state` shapes)."""
    if not into:
        return json.loads(json.dumps(part))
    for key in ("requests", "rows", "errors", "compared", "agreed"):
        into[key] += part[key]
    into["latency"] = [a + b for a, b in zip(into["latency"], part["latency"], strict=True)]
    for k, v in part["categories"].items():
        into["categories"][k] = into["categories"].get(k, 0) + v
    a, b = into["numeric"], part["numeric"]
    into["numeric"] = [a[0] + b[0], a[1] + b[1], a[2] + b[2], min(a[3], b[3]), max(a[4], b[4])]
    return into


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


def summary(raw: dict[str, Any]) -> dict[str, Any]:
    """Readable figures from raw counters: percentiles, error rate, output distribution."""
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


def outputs(answer: Any, field: str | None) -> list[Any]:
    """The main output value of each row of a JSON answer (``field``, or the first field)."""
    rows = answer if isinstance(answer, list) else [answer]
    values = []
    for row in rows:
        if isinstance(row, dict) and row:
            value = row.get(field) if field else next(iter(row.values()))
            values.append(value[0] if isinstance(value, list) and value else value)
    return values


def agree(primary: list[Any], shadow: list[Any]) -> tuple[int, int]:
    """(rows compared, rows whose main outputs agree); floats within 1e-6 relative."""
    agreed = 0
    for a, b in zip(primary, shadow, strict=False):
        if isinstance(a, float) or isinstance(b, float):
            with contextlib.suppress(TypeError, ValueError):
                agreed += math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
        else:
            agreed += a == b
    return min(len(primary), len(shadow)), agreed


def subtract(after: dict[str, Any], before: dict[str, Any] | None) -> dict[str, Any]:
    """Raw counters added between two readings of the same totals (``before`` None: since start).

    Counts and histograms only grow, so the difference is what happened in between; min/max of
    numeric outputs cannot be subtracted and are kept from ``after``.
    """
    if not before:
        return json.loads(json.dumps(after))
    out = json.loads(json.dumps(after))
    for key in ("requests", "rows", "errors", "compared", "agreed"):
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


def rates(raw: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Live figures of raw counters gathered over ``seconds``: rps, error rate, p50/p99 (ms)."""
    figures = summary(raw)
    return {
        "requests": figures["requests"],
        "errors": figures["errors"],
        "rps": figures["requests"] / seconds if seconds > 0 else 0.0,
        "error_rate": figures["error_rate"],
        "p50_ms": figures["p50_ms"],
        "p99_ms": figures["p99_ms"],
    }
