"""Per-arm totals merged across replicas: each replica counts, then flushes deltas to one actor.

A split's figures must add up across every replica of the stable ingress that splits the route.
Each replica keeps `ArmCounters` per key (the arm's application) and sends them every `FLUSH_S`
to the graph's one detached named actor, which adds them up under the split's name (a new name
starts from zero); a report flushes the asking replica first, then reads the actor's totals
(the other replicas' last second may still be on its way). The same requests are counted in
Prometheus through Ray Serve's metrics: ``graphops_arm_requests``, ``graphops_arm_errors`` and
``graphops_arm_latency_ms``, tagged ``graph``, ``arm`` (a version) and ``role`` (``stable``,
``arm`` or ``mirror``).
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

import ray
from ray.serve.metrics import Counter, Histogram

from graphops.runtime.figures import LATENCY_BOUNDS_MS, ArmCounters, Raw, merge

STATS_NAMESPACE = "graphops"
FLUSH_S = 1.0
KEPT_SPLITS = 8
"""Splits of one graph whose totals its actor keeps (the newest); older ones are dropped."""


class _SplitTotalsState:
    """Totals of a graph's splits by name, merged from every replica's periodic deltas."""

    def __init__(self) -> None:
        self.totals: dict[str, dict[str, Raw]] = {}
        self.started: dict[str, float] = {}

    def _split(self, name: str) -> dict[str, Raw]:
        if name not in self.totals:
            for old in sorted(self.started, key=self.started.__getitem__)[: -KEPT_SPLITS + 1]:
                del self.totals[old], self.started[old]
            self.totals[name], self.started[name] = {}, time.time()
        return self.totals[name]

    def add(self, name: str, parts: dict[str, Raw]) -> None:
        """Add per-key raw counters (arm app -> `ArmCounters.state`) to split ``name``."""
        totals = self._split(name)
        for key, part in parts.items():
            totals[key] = merge(totals.get(key, {}), part)

    def read(self, name: str) -> dict[str, Any]:
        """Raw totals of split ``name`` and when counting began."""
        totals = self._split(name)
        return {"since": self.started[name], "totals": totals}


SplitTotals = ray.remote(num_cpus=0)(_SplitTotalsState)  # the actor class


def totals_actor(graph: str) -> Any:
    """The (detached, named) totals actor of a graph's splits; created on first use."""
    return SplitTotals.options(
        name=f"splits:{graph}",
        namespace=STATS_NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
    ).remote()


@functools.cache
def arm_metrics() -> tuple[Counter, Counter, Histogram]:
    """The per-arm Prometheus metrics of this process (made once: Ray names them globally)."""
    # Ray types tag_keys as a 1-tuple (tuple[str]); any tuple of names is what it takes.
    tags: Any = ("graph", "arm", "role")
    return (
        Counter("graphops_arm_requests", description="Requests answered per arm.", tag_keys=tags),
        Counter("graphops_arm_errors", description="Failed requests (5xx) per arm.", tag_keys=tags),
        Histogram(
            "graphops_arm_latency_ms",
            description="Latency of the arm's answer, seen by what splits the route.",
            boundaries=list(LATENCY_BOUNDS_MS[::4]),
            tag_keys=tags,
        ),
    )


class MergedCounters:
    """One replica's per-key counters of split ``name``, flushed to its actor every `FLUSH_S`."""

    def __init__(self, graph: str, name: str) -> None:
        self.name = name
        self.stats: dict[str, ArmCounters] = {}
        self.actor = totals_actor(graph)
        self.flusher: asyncio.Task[Any] | None = None

    def record(
        self,
        key: str,
        ms: float,
        status: int,
        rows: int,
        values: list[Any],
        tags: dict[str, str],
    ) -> ArmCounters:
        """Count one answered request under ``key`` (and in Prometheus, with ``tags``).

        Starts the flushing on first use.
        """
        if self.flusher is None:
            self.flusher = asyncio.get_running_loop().create_task(self._flush_forever())
        stats = self.stats.get(key)
        if stats is None:
            stats = self.stats[key] = ArmCounters()
        stats.record(ms, status, rows, values)
        requests, errors, latency = arm_metrics()
        requests.inc(tags=tags)
        if status >= 500 or status == 0:
            errors.inc(tags=tags)
        latency.observe(ms, tags=tags)
        return stats

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            await self.flush()

    async def flush(self) -> None:
        """Send this replica's counters to the actor and start again from zero."""
        parts = {k: s.state() for k, s in self.stats.items() if s.requests}
        if parts:
            for s in self.stats.values():
                s.reset()
            await self.actor.add.remote(self.name, parts)

    async def totals(self) -> dict[str, Any]:
        """Every replica's totals (this one's flushed first): ``since`` and ``totals`` by key."""
        await self.flush()
        result: dict[str, Any] = await self.actor.read.remote(self.name)
        return result

    def stop(self) -> None:
        """Stop flushing (the split's name changed); the last second's counts are lost."""
        if self.flusher is not None:
            self.flusher.cancel()
