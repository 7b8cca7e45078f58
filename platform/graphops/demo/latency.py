"""The main job's latency check: each graph on dev's stable route, one request at a time.

A keep-alive client sends ``REQUESTS`` requests per graph to the route dev serves (through the
path dev's `serving:` chose: HAProxy, direct ingress or Serve's proxy) and prints p50/p99 and the
median of each phase the ingress reports in its ``Server-Timing`` header, so a newcomer sees where
the time of a request goes. Figures only; `nox -s bench -- online` is the measurement.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from typing import Any

from rich.table import Table

from graphops._views import console
from graphops.demo.job import DemoJob

REQUESTS = 200


def phases(header: str | None) -> dict[str, float]:
    """``{"parse": 0.13, ...}`` (ms) from a ``Server-Timing`` header (empty when absent)."""
    out: dict[str, float] = {}
    for part in (header or "").split(","):
        name, _, rest = part.strip().partition(";dur=")
        if name and rest:
            out[name] = float(rest)
    return out


def measure(port: int, route: str, body: Any, count: int = REQUESTS) -> dict[str, Any]:
    """p50/p99 (ms, as the client saw them) and the median of each server phase over ``count``."""
    payload = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    seen: list[float] = []
    timings: dict[str, list[float]] = {}
    failed = 0
    try:
        for _ in range(count):
            began = time.perf_counter()
            connection.request("POST", route, payload, headers)
            response = connection.getresponse()
            response.read()
            seen.append((time.perf_counter() - began) * 1000)
            failed += response.status != 200
            for name, ms in phases(response.getheader("server-timing")).items():
                timings.setdefault(name, []).append(ms)
    finally:
        connection.close()
    seen.sort()
    return {
        "p50": statistics.median(seen),
        "p99": seen[min(len(seen) - 1, int(len(seen) * 0.99))],
        "failed": failed,
        "phases": {k: statistics.median(v) for k, v in timings.items()},
    }


def show_latency(job: DemoJob, names: list[str]) -> None:
    """Measure each answered graph on dev and print one row per graph."""
    from graphops.environments import load_environment, load_release

    port = job.state.services["ray-dev"].ports["serve"]
    release = load_release(job.sandbox, "dev")
    ingress = load_environment(job.sandbox, "dev").serving.ingress
    table = Table(title=f"dev, {REQUESTS} requests one at a time, path: {ingress}")
    for column in ("graph", "p50 ms", "p99 ms", "failed", "server phases (median ms)"):
        table.add_column(column)
    for name in names:
        entry = release.graphs.get(name)
        if entry is None or not entry.lock.example:
            continue
        figures = measure(port, f"/{name}", entry.lock.example)
        spent = ", ".join(f"{k} {v:.2f}" for k, v in figures["phases"].items())
        table.add_row(
            name, f"{figures['p50']:.2f}", f"{figures['p99']:.2f}", str(figures["failed"]), spent
        )
        if figures["failed"]:
            job.problems.append(f"dev: {name} failed {figures['failed']} of {REQUESTS} requests")
    console.print(table)
    console.print(
        "What the client sees beyond `total` is the path to the replica; "
        "docs/performance.md has the floor benchmark."
    )
