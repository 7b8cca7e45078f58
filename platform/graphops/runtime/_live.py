"""What one ingress replica counts per request: Prometheus metrics and its own totals (`Live`)."""

from __future__ import annotations

import time
from typing import Any

from ray import serve
from ray.serve import metrics as serve_metrics

from graphops.runtime.figures import LATENCY_BOUNDS_MS, ArmCounters


class Live:
    """What one ingress replica counts per request: Prometheus metrics and in-memory totals.

    Prometheus (through ``ray.serve.metrics``, which adds the ``application``, ``deployment``
    and ``replica`` tags): ``graphops_requests`` (tag ``code``), ``graphops_errors`` (5xx),
    ``graphops_latency_ms`` and ``graphops_stage_latency_ms`` (tag ``stage``), all tagged with
    ``graph`` and ``version``. The in-memory totals (`ArmCounters`) are served at ``GET
    <route>/stats`` so that `graphops status --live` works on a cluster without Prometheus.
    """

    def __init__(self, graph: str, version: str) -> None:
        context = serve.get_replica_context()
        self.who = {"graph": graph, "version": version, "app": context.app_name}
        self.replica = context.replica_id.unique_id
        self.totals = ArmCounters()
        self.since = time.time()
        base = {"graph": graph, "version": version}
        bounds = list(LATENCY_BOUNDS_MS[::4])
        # Ray types tag_keys as a 1-tuple (tuple[str]); any tuple of names is what it takes.
        keys: Any = ("graph", "version")
        code: Any = ("graph", "version", "code")
        stage: Any = ("graph", "version", "stage")
        self.requests = serve_metrics.Counter(
            "graphops_requests", description="Requests answered, by status code.", tag_keys=code
        )
        self.errors = serve_metrics.Counter(
            "graphops_errors", description="Requests answered 5xx.", tag_keys=keys
        )
        self.latency = serve_metrics.Histogram(
            "graphops_latency_ms",
            description="Time the ingress took to answer (ms).",
            boundaries=bounds,
            tag_keys=keys,
        )
        self.stages = serve_metrics.Histogram(
            "graphops_stage_latency_ms",
            description="Time of one stage of the plan, as the ingress waits for it (ms).",
            boundaries=bounds,
            tag_keys=stage,
        )
        for metric in (self.requests, self.errors, self.latency, self.stages):
            metric.set_default_tags(dict(base))  # Serve adds its own tags to the dict given

    def record(self, start: float, status: int) -> None:
        """One answered request (any status)."""
        ms = (time.perf_counter() - start) * 1000
        self.totals.record(ms, status, 1, [])
        self.requests.inc(tags={"code": str(status)})
        if status >= 500:
            self.errors.inc()
        self.latency.observe(ms)

    def stage(self, name: str, start: float) -> None:
        """One stage of one request, done."""
        self.stages.observe((time.perf_counter() - start) * 1000, tags={"stage": name})

    def read(self) -> dict[str, Any]:
        """This replica's totals since it started (raw `ArmCounters` counters)."""
        return {
            **self.who,
            "replica": self.replica,
            "since": self.since,
            "now": time.time(),
            "raw": self.totals.state(),
        }
