"""Per-arm totals merged across replicas: each replica counts, then flushes deltas to one actor.

A split's figures (the router's arms, or the arms of a split in a stable ingress) must add up
across every replica that routes its requests. Each replica keeps `ArmStats` per key (e.g.
``arm:<version>``) and sends them every `FLUSH_S` to a detached named actor of the experiment,
which adds them up; a report flushes the asking replica first, then reads the actor's totals
(the other replicas' last second may still be on its way). The same requests are counted in
Prometheus through Ray Serve's metrics: ``graphops_arm_requests``, ``graphops_arm_errors`` and
``graphops_arm_latency_ms``, tagged ``graph``, ``arm`` (a version) and ``role`` (``arm`` and
``shadow`` behind the router, ``canary`` in a splitting ingress).
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

import ray
from ray.serve.metrics import Counter, Histogram

from graphops.runtime._traffic import LATENCY_BOUNDS_MS, ArmStats, merge

STATS_NAMESPACE = "graphops"
FLUSH_S = 1.0


class _ExperimentStatsState:
    """Totals of one experiment, merged from every replica's periodic deltas."""

    def __init__(self) -> None:
        self.totals: dict[str, dict[str, Any]] = {}
        self.started = time.time()

    def add(self, parts: dict[str, dict[str, Any]]) -> None:
        """Add per-key raw counters (``role:version`` -> `ArmStats.state`)."""
        for key, part in parts.items():
            self.totals[key] = merge(self.totals.get(key, {}), part)

    def read(self) -> dict[str, Any]:
        """Raw totals and when counting started."""
        return {"since": self.started, "totals": self.totals}


ExperimentStats = ray.remote(num_cpus=0)(_ExperimentStatsState)  # the actor class


def stats_actor(graph: str, experiment: str) -> Any:
    """The (detached, named) statistics actor of one experiment; created on first use."""
    return ExperimentStats.options(
        name=f"experiment:{graph}:{experiment}",
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
    """One replica's per-key counters of one experiment, flushed to its actor every `FLUSH_S`."""

    def __init__(self, graph: str, experiment: str, actor: str | None = None) -> None:
        """Counters of ``experiment``, flushed to the actor named ``actor`` (default: the same)."""
        self.experiment = experiment
        self.stats: dict[str, ArmStats] = {}
        self.actor = stats_actor(graph, actor or experiment)
        self.flusher: asyncio.Task[Any] | None = None

    def record(
        self,
        key: str,
        ms: float,
        status: int,
        rows: int,
        values: list[Any],
        tags: dict[str, str],
    ) -> ArmStats:
        """Count one answered request under ``key`` (and in Prometheus, with ``tags``).

        Starts the flushing on first use.
        """
        if self.flusher is None:
            self.flusher = asyncio.get_running_loop().create_task(self._flush_forever())
        stats = self.stats.setdefault(key, ArmStats())
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
        """Send this replica's counters to the experiment's actor and start again from zero."""
        parts = {k: s.state() for k, s in self.stats.items() if s.requests}
        if parts:
            for s in self.stats.values():
                s.reset()
            await self.actor.add.remote(parts)

    async def totals(self) -> dict[str, Any]:
        """Every replica's totals (this one's flushed first): ``since`` and ``totals`` by key."""
        await self.flush()
        result: dict[str, Any] = await self.actor.read.remote()
        return result

    def stop(self) -> None:
        """Stop flushing (the experiment changed); unflushed counts of the last second are lost."""
        if self.flusher is not None:
            self.flusher.cancel()


def empty() -> dict[str, Any]:
    """Raw counters of an arm that answered nothing yet."""
    return ArmStats().state()
