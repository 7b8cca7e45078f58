"""HTTP load from a process of its own (so the client never shares an event loop with a server).

    python -m benchmarks._load URL BODY_FILE --concurrency 32 --seconds 8
    python -m benchmarks._load URL BODY_FILE --concurrency 1 --requests 300

Prints one JSON object: requests, errors, seconds, throughput (req/s), p50/p90/p99/mean (ms).
Every request is a POST of BODY_FILE's bytes, or, for a ``.jsonl`` file, of its lines in turn
(different sticky keys); non-200 answers count as errors.

At concurrency 1 it also reads each answer's ``Server-Timing`` header (graphops' ingress says
where the time went: ``read;dur=0.02, parse;dur=0.05, <stage>;dur=..., total;dur=...``, ms) and
adds ``server_timing``: the median of each phase over the requests that had it, and ``outside``,
the median of (client time - total): proxy, network, client. Absent header: no such key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from pathlib import Path

import aiohttp

WARMUP = 20


def server_timing(header: str) -> dict[str, float]:
    """``a;dur=1.5, b;desc="x";dur=2`` -> {"a": 1.5, "b": 2.0} (entries without dur skipped)."""
    phases = {}
    for entry in header.split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "dur" and name:
                with contextlib.suppress(ValueError):
                    phases[name] = float(value.strip().strip('"'))
    return phases


def _timing_summary(timed: list[tuple[float, dict[str, float]]]) -> dict[str, object]:
    """Medians of each phase (ms) and of client time minus the server's total."""
    names = {n for _, phases in timed for n in phases}
    medians = {n: statistics.median(p[n] for _, p in timed if n in p) for n in sorted(names)}
    outside = [client - p["total"] for client, p in timed if "total" in p]
    return {
        "requests": len(timed),
        "phases_p50_ms": medians,
        "outside_p50_ms": statistics.median(outside) if outside else None,
        "client_p50_ms": statistics.median(client for client, _ in timed),
    }


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _load(
    url: str, bodies: list[bytes], concurrency: int, requests: int | None, seconds: float | None
) -> dict[str, object]:
    headers = {"Content-Type": "application/json"}
    turn = 0

    def next_body() -> bytes:
        nonlocal turn
        turn += 1
        return bodies[turn % len(bodies)]

    latencies: list[float] = []
    timed: list[tuple[float, dict[str, float]]] = []  # (client ms, Server-Timing phases)
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(WARMUP):
            async with session.post(url, data=next_body(), headers=headers) as answer:
                await answer.read()
        sent = 0
        started = time.perf_counter()
        deadline = started + seconds if seconds else None

        async def worker() -> None:
            nonlocal sent, errors
            while True:
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                if requests is not None:
                    if sent >= requests:
                        return
                    sent += 1
                t0 = time.perf_counter()
                async with session.post(url, data=next_body(), headers=headers) as answer:
                    await answer.read()
                    if answer.status != 200:
                        errors += 1
                    header = answer.headers.get("Server-Timing") if concurrency == 1 else None
                client_ms = (time.perf_counter() - t0) * 1000
                latencies.append(client_ms)
                if header:
                    timed.append((client_ms, server_timing(header)))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    extra = {"server_timing": _timing_summary(timed)} if timed else {}
    return extra | {
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "concurrency": concurrency,
        "throughput": len(latencies) / elapsed,
        "p50_ms": _quantile(latencies, 0.50),
        "p90_ms": _quantile(latencies, 0.90),
        "p99_ms": _quantile(latencies, 0.99),
        "mean_ms": statistics.fmean(latencies),
    }


def main() -> None:
    """Parse the arguments, run the load, print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("body", type=Path)
    parser.add_argument("--concurrency", type=int, default=1)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--requests", type=int)
    group.add_argument("--seconds", type=float)
    args = parser.parse_args()
    data = args.body.read_bytes()
    bodies = data.splitlines() if args.body.suffix == ".jsonl" else [data]
    result = asyncio.run(_load(args.url, bodies, args.concurrency, args.requests, args.seconds))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
