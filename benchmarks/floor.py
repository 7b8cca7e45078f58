"""The floor benchmark: graphops online against the one-process floor and a minimal Serve app.

For digits and feed_ranking (its features read from Redis), in ONE run, every system answering
the same request from a separate client process on loopback (`benchmarks._load`):

- ``floor``: a Starlette app under uvicorn in ONE process doing the same work (the graph's own
  request schema, preprocessing, registered weights, postprocessing; for feed_ranking the same
  Redis keys in one ``MGET``); `benchmarks.serve_apps.floor_app`.
- ``serve_<mode>``: a minimal hand-written Serve app, ONE deployment doing all the work
  (`benchmarks.serve_apps.one_app`), reached on that mode's path.
- ``graphops_<mode>``: the graph deployed by `graphops.runtime.online.deploy`.

Modes (`graphops.runtime.serving.cluster_env`), one Ray cluster each, started once per run in a
child process with that environment and shut down before the next: ``proxy`` (Serve's HTTP
proxy), ``direct`` (Ray 2.60's direct ingress, ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``: requests go
to the ingress replica's own port, found in the controller's target groups) and ``haproxy``
(HAProxy on the Serve port in front of those replicas' ports). The floor process runs for the
whole run and is measured beside the systems of every mode. Within a mode the systems alternate
their order every repeat; each measures p50/p99 at concurrency 1 over ``--requests`` requests and
throughput at ``--concurrency`` for ``--seconds``. Ratios to the floor are per repeat (the floor
measured in the same repeat of the same mode), reported as median, min and max. graphops'
``Server-Timing`` header, where present, gives the median of each phase at concurrency 1.

Results go to the ``floor`` key of ``benchmarks/results/online.json`` (the other comparisons of
that file are kept). Run it with ``nox -s bench -- floor`` or::

    python -m benchmarks.floor --repeats 3 --requests 300 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._report import utc_now, write_json
from benchmarks.online import load, wait_http

REPO = Path(__file__).resolve().parents[1]
GRAPHS = ("digits", "feed_ranking")
MODES = ("proxy", "direct", "haproxy")
TARGETS = {"digits": {"p50": 2.0, "p99": 3.0, "throughput": 0.5}, "feed_ranking": {"p50": 2.0}}
"""Issue 29's targets: graphops / floor (lower is better but throughput: higher)."""
GRAPHOPS_CPU_BUDGET = 0.45
"""CPUs per graphops application: two graphs and two one-deployment apps fit a 2-CPU cluster."""
KEY_PREFIX = "bench"
MODE_TIMEOUT_S = 3600


def settings() -> dict[str, Any]:
    """Every baseline's settings, as written to the results and docs/performance.md."""
    from benchmarks.serve_apps import ONE_DEPLOYMENT

    return {
        "floor": "Starlette under uvicorn (--loop uvloop --http httptools --no-access-log), one "
        "process, one worker, torch 1 thread; pydantic request schema of the graph; "
        "feed_ranking: one redis-py MGET of the member and candidate keys per request",
        "serve": {
            "deployments": 1,
            "options": ONE_DEPLOYMENT,
            "handler": "async __call__(starlette Request) -> Response; the same Work as floor",
        },
        "graphops": {
            "deploy": "graphops.runtime.online.deploy (the graph's own plan and defaults)",
            "cpu_budget": GRAPHOPS_CPU_BUDGET,
            "features": "redis (feed_ranking)",
        },
        "modes": {
            "proxy": "Serve's HTTP proxy on 127.0.0.1 (no serving variables but "
            "RAY_SERVE_USE_GRPC_BY_DEFAULT=0)",
            "direct": "RAY_SERVE_THROUGHPUT_OPTIMIZED=1 with a private direct-ingress port range; "
            "requests to the ingress replica's own port",
            "haproxy": "RAY_SERVE_ENABLE_HA_PROXY=1 + RAY_SERVE_THROUGHPUT_OPTIMIZED=1 "
            "(/usr/sbin/haproxy), HAProxy on the Serve port, private state dir and stats/metrics "
            "ports",
        },
        "load": "benchmarks._load: aiohttp, keep-alive, own process, loopback; 20 warm-up "
        "requests per run",
    }


# -- the parent: models, Redis, the floor process, one child per mode ---------------------------


def main(argv: list[str] | None = None) -> int:
    """Train both graphs, start Redis and the floor, run every mode's child, write the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300, help="Requests of a latency run.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Length of a throughput run.")
    parser.add_argument("--concurrency", type=int, default=32, help="Clients of a throughput run.")
    parser.add_argument("--graphs", default=",".join(GRAPHS), help="Comma-separated graphs.")
    parser.add_argument("--modes", default=",".join(MODES), help="Comma-separated modes.")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/online.json")
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="Print the floor tables of --out as Markdown (for docs/performance.md); run nothing.",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # a mode's child process: its work dir
    args = parser.parse_args(argv)
    if args.child:
        return child(Path(args.child))
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())["floor"]))
        return 0
    graphs, modes = args.graphs.split(","), args.modes.split(",")
    if not set(graphs) <= set(GRAPHS) or not set(modes) <= set(MODES) or not graphs or not modes:
        parser.error(f"--graphs among {', '.join(GRAPHS)}; --modes among {', '.join(MODES)}.")

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

    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "the floor: graphops vs one process vs a one-deployment Serve app",
        "date": utc_now(),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "parameters": {k: v for k, v in vars(args).items() if k not in ("out", "child")},
        "settings": settings(),
        "targets": TARGETS,
    }
    with (
        tempfile.TemporaryDirectory(prefix="graphops-bench-floor-") as tmp,
        local_redis() as redis_url,
    ):
        work = Path(tmp)
        repo = work / "repo"
        shutil.copytree(
            REPO / "graphs", repo / "graphs", ignore=shutil.ignore_patterns("__pycache__")
        )
        registry = Registry(work / ".graphops")
        specs = []
        for graph in graphs:
            package = load_graph(repo, graph)
            print(f"training {graph}", flush=True)
            package.trainer()(registry)  # type: ignore[misc]
            uri = package.graph.node("logits" if graph == "digits" else "scores").uri  # type: ignore[attr-defined]
            source = registry.client.get_model_version_by_alias(uri.name, uri.alias).source
            (work / f"body-{graph}.json").write_text(json.dumps(request_example(package)))
            specs.append(
                {
                    "graph": graph,
                    "repo": str(repo),
                    "source": source,
                    "tracking_uri": registry.tracking_uri,
                    "redis_url": redis_url,
                    "key_prefix": KEY_PREFIX,
                }
            )
            if graph == "feed_ranking":
                config = RedisConfig(url=redis_url, key_prefix=KEY_PREFIX)
                load_tables(config, package.path, feature_tables(package.graph))
                features = FeaturesConfig(store="redis", redis=config)
                (work / "features.json").write_text(features.model_dump_json())
        (work / "specs.json").write_text(json.dumps(specs))
        floor, floor_url = start_floor(work)
        try:
            for graph in graphs:
                wait_http(f"{floor_url}/{graph}", (work / f"body-{graph}.json").read_bytes())
            modes_out = {}
            for mode in modes:
                config = args_of(args) | {"mode": mode, "graphs": graphs, "floor": floor_url}
                (work / f"mode-{mode}.json").write_text(json.dumps(config))
                print(f"== mode {mode}: a cluster of its own", flush=True)
                subprocess.run(
                    [sys.executable, "-m", "benchmarks.floor", "--child", str(work / mode)],
                    cwd=REPO,
                    check=True,
                    timeout=MODE_TIMEOUT_S,
                )
                modes_out[mode] = json.loads((work / mode / "result.json").read_text())
        finally:
            floor.terminate()
            floor.wait(timeout=30)
    result |= summarize(modes_out, graphs)
    result["total_s"] = time.perf_counter() - started
    kept = json.loads(args.out.read_text()) if args.out.is_file() else {}
    kept["floor"] = result
    write_json(args.out, kept)
    print_table(result)
    print(f"written to the 'floor' key of {args.out}")
    return 0


def args_of(args: argparse.Namespace) -> dict[str, Any]:
    """What a child needs of the command line."""
    return {k: getattr(args, k) for k in ("repeats", "requests", "seconds", "concurrency")}


def serving_of(mode: str) -> Any:
    """The `ServingConfig` of ``mode`` as this machine runs it, on a private port range.

    graphops starts the cluster with it (`ensure_ray(serving=...)`: `cluster_env` in the
    environment of Ray's processes, HAProxy's own short folder and free ports on loopback).
    """
    from graphops.runtime.serving import ServingConfig, usable

    low = free_port_range(20)
    serving, why = usable(ServingConfig(ingress=mode, direct_ports=(low, low + 19)))  # type: ignore[arg-type]
    if why:
        print(f"  {mode}: {why}", flush=True)
    return serving


def free_port_range(width: int) -> int:
    """The first of ``width`` consecutive ports free on 127.0.0.1 (direct ingress's range)."""
    import random
    import socket

    for _ in range(200):
        low = random.randrange(32000, 60000 - width)
        try:
            held = []
            for port in range(low, low + width):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return low
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"no {width} consecutive free ports found")


def start_floor(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The floor process (uvicorn, one worker) on a free loopback port."""
    from graphops._net import free_port

    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "benchmarks.serve_apps:floor_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env=os.environ | {"BENCH_SPECS": str(work / "specs.json")},
    )
    return process, f"http://127.0.0.1:{port}"


# -- a mode's child: its own cluster, graphops and the Serve app deployed, measured -------------


def child(folder: Path) -> int:
    """Start this mode's cluster, deploy, check the answers agree, measure, write, shut down."""
    import requests
    from ray import serve

    from benchmarks.serve_apps import one_app
    from graphops._net import free_port
    from graphops.features import FeaturesConfig
    from graphops.graph import load_graph
    from graphops.registry import Registry
    from graphops.runtime.online import deploy, ensure_ray, start_http
    from graphops.runtime.serving import cluster_env

    work = folder.parent
    mode = folder.name
    config = json.loads((work / f"mode-{mode}.json").read_text())
    specs = {s["graph"]: s for s in json.loads((work / "specs.json").read_text())}
    repo = work / "repo"
    registry = Registry(work / ".graphops")
    serving = serving_of(mode)
    effective = serving.ingress
    ensure_ray(repo, num_cpus=os.cpu_count(), serving=serving)
    try:
        port = start_http(free_port())
        urls: dict[str, dict[str, str]] = {}
        for graph in config["graphs"]:
            package = load_graph(repo, graph)
            options: dict[str, Any] = {"port": port, "cpu_budget": GRAPHOPS_CPU_BUDGET}
            if graph == "feed_ranking":
                options["features"] = FeaturesConfig.model_validate_json(
                    (work / "features.json").read_text()
                )
            ours = deploy(package, registry, **options)
            hand = f"serve-{graph}"
            serve.run(one_app(specs[graph]), name=hand, route_prefix=f"/{hand}", blocking=False)
            wait_running(hand)
            routes = {"graphops": (ours.name, ours.args.route), "serve": (hand, f"/{hand}")}
            urls[graph] = {"floor": f"{config['floor']}/{graph}"} | {
                f"{kind}_{mode}": url_of(effective, port, app, route)
                for kind, (app, route) in routes.items()
            }
        bodies = {g: work / f"body-{g}.json" for g in config["graphs"]}
        answers = {}
        for graph, systems in urls.items():
            body = bodies[graph].read_bytes()
            for name, url in systems.items():
                wait_http(url, body)
                answers[(graph, name)] = requests.post(url, data=body, timeout=30).json()
            check_answers(graph, {n: answers[(graph, n)] for n in systems})
        print(f"  {mode} ({effective}): {json.dumps(urls)}", flush=True)
        runs = measure(urls, bodies, argparse.Namespace(**config))
        out = {
            "mode": mode,
            "effective_mode": effective,
            "urls": urls,
            "serving": serving.model_dump(mode="json"),
            "cluster_env": cluster_env(serving),  # HAProxy's folder and ports: graphops' own
            "runs": runs,
        }
        folder.mkdir(exist_ok=True)
        write_json(folder / "result.json", out)
    finally:
        import ray

        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    return 0


def wait_running(app: str, timeout_s: float = 300) -> None:
    """Poll Serve until ``app`` runs."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = serve.status().applications.get(app)
        if status is not None and status.status == "RUNNING":
            return
        if status is not None and status.status == "DEPLOY_FAILED":
            raise RuntimeError(f"{app} failed: {status.message}")
        time.sleep(0.25)
    raise RuntimeError(f"{app} did not run within {timeout_s} s")


def url_of(mode: str, port: int, app: str, route: str) -> str:
    """Where a client reaches ``app`` in ``mode``.

    The Serve port (proxy or HAProxy), or, for direct ingress, the ingress replica's own port
    (`graphops.runtime.online.replica_urls`: the controller's target groups).
    """
    if mode != "direct":
        return f"http://127.0.0.1:{port}{route}"
    from graphops.runtime.online import replica_urls

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        urls = replica_urls(app, route)
        if urls:
            return urls[0]
        time.sleep(0.5)
    raise RuntimeError(f"no direct-ingress replica URL for {app} within 60 s")


def check_answers(graph: str, answers: dict[str, Any]) -> None:
    """Every system gives the same answer (labels / top items; scores within 1e-4)."""
    import numpy as np

    ref_name, ref = next(iter(answers.items()))
    for name, answer in answers.items():
        if graph == "digits":
            same = (
                answer["label"] == ref["label"]
                and abs(answer["confidence"] - ref["confidence"]) < 1e-4
            )
        else:
            same = answer["top_items"] == ref["top_items"] and np.allclose(
                answer["scores"], ref["scores"], atol=1e-4
            )
        if not same:
            raise SystemExit(f"FAILED: {graph}: {name} answers {answer}, {ref_name} {ref}.")


def measure(
    urls: dict[str, dict[str, str]], bodies: dict[str, Path], args: argparse.Namespace
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per graph and system, one run per repeat (latency, saturated); order rotating."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        g: {name: [] for name in systems} for g, systems in urls.items()
    }
    for repeat in range(args.repeats):
        for graph, systems in urls.items():
            names = list(systems)
            shift = repeat % len(names)
            for name in names[shift:] + names[:shift]:
                latency = load(systems[name], bodies[graph], concurrency=1, requests=args.requests)
                saturated = load(
                    systems[name],
                    bodies[graph],
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                )
                runs[graph][name].append(
                    {"latency": latency, "saturated": saturated, "load_1m": os.getloadavg()[0]}
                )
                print(
                    f"  r{repeat + 1} {graph:>12} {name:>16}: p50 {latency['p50_ms']:.2f} ms  "
                    f"p99 {latency['p99_ms']:.2f} ms  {saturated['throughput']:.0f} req/s "
                    f"(errors {latency['errors'] + saturated['errors']})",
                    flush=True,
                )
    return runs


# -- the figures --------------------------------------------------------------------------------


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(modes: dict[str, Any], graphs: list[str]) -> dict[str, Any]:
    """Per graph: each system's medians, per-repeat ratios to the floor, phases, verdict."""
    out: dict[str, Any] = {
        "modes": {m: {k: v for k, v in r.items() if k != "runs"} for m, r in modes.items()}
    }
    per_graph: dict[str, Any] = {}
    verdict: dict[str, Any] = {}
    for graph in graphs:
        systems: dict[str, Any] = {}
        floor_runs: list[dict[str, Any]] = []
        for mode, result in modes.items():
            runs = result["runs"][graph]
            floor_runs += runs["floor"]
            for name, items in runs.items():
                if name == "floor":
                    continue
                ratios = {
                    "p50": [
                        a["latency"]["p50_ms"] / f["latency"]["p50_ms"]
                        for a, f in zip(items, runs["floor"], strict=True)
                    ],
                    "p99": [
                        a["latency"]["p99_ms"] / f["latency"]["p99_ms"]
                        for a, f in zip(items, runs["floor"], strict=True)
                    ],
                    "throughput": [
                        a["saturated"]["throughput"] / f["saturated"]["throughput"]
                        for a, f in zip(items, runs["floor"], strict=True)
                    ],
                }
                systems[name] = medians(items) | {
                    "mode": mode,
                    "vs_floor": {k: spread(v) | {"per_repeat": v} for k, v in ratios.items()},
                }
        systems = {"floor": medians(floor_runs) | {"mode": "all"}} | systems
        per_graph[graph] = {"systems": systems}
        for name, row in systems.items():
            if not name.startswith("graphops_"):
                continue
            marks = {}
            for key, target in TARGETS.get(graph, {}).items():
                value = row["vs_floor"][key]["median"]
                marks[key] = {
                    "target": f"{'>=' if key == 'throughput' else '<='} {target}",
                    "value": value,
                    "met": value >= target if key == "throughput" else value <= target,
                }
            verdict[f"{graph}/{name}"] = marks
    out["graphs"] = per_graph
    out["p1"] = p1(per_graph)
    out["verdict"] = verdict
    return out


def p1(per_graph: dict[str, Any]) -> dict[str, Any]:
    """P1 per graph and mode: graphops over the one-deployment Serve app on the same path.

    Per repeat (both measured in the same repeat of the same cluster), median, min and max.
    """
    out: dict[str, Any] = {}
    for graph, data in per_graph.items():
        systems = data["systems"]
        for name, row in systems.items():
            if not name.startswith("graphops_"):
                continue
            hand = systems.get("serve_" + name.removeprefix("graphops_"))
            if hand is None:
                continue
            pairs = list(zip(row["runs"], hand["runs"], strict=True))
            out[f"{graph}/{name.removeprefix('graphops_')}"] = {
                "p50": spread([a["p50_ms"] / b["p50_ms"] for a, b in pairs]),
                "p99": spread([a["p99_ms"] / b["p99_ms"] for a, b in pairs]),
                "throughput": spread([a["throughput"] / b["throughput"] for a, b in pairs]),
            }
    return out


def medians(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs, the spread, Server-Timing phases where the system sent them."""
    row: dict[str, Any] = {
        "p50_ms": statistics.median(r["latency"]["p50_ms"] for r in items),
        "p99_ms": statistics.median(r["latency"]["p99_ms"] for r in items),
        "throughput": statistics.median(r["saturated"]["throughput"] for r in items),
        "saturated_p50_ms": statistics.median(r["saturated"]["p50_ms"] for r in items),
        "spread": {
            "p50_ms": spread([r["latency"]["p50_ms"] for r in items]),
            "p99_ms": spread([r["latency"]["p99_ms"] for r in items]),
            "throughput": spread([r["saturated"]["throughput"] for r in items]),
        },
        "errors": sum(r["latency"]["errors"] + r["saturated"]["errors"] for r in items),
        "runs": [
            {
                "p50_ms": r["latency"]["p50_ms"],
                "p99_ms": r["latency"]["p99_ms"],
                "throughput": r["saturated"]["throughput"],
                "saturated_p50_ms": r["saturated"]["p50_ms"],
                "load_1m": r["load_1m"],
            }
            for r in items
        ],
    }
    timings = [r["latency"]["server_timing"] for r in items if "server_timing" in r["latency"]]
    if timings:
        names = {n for t in timings for n in t["phases_p50_ms"]}
        row["phases_p50_ms"] = {
            n: statistics.median(t["phases_p50_ms"][n] for t in timings if n in t["phases_p50_ms"])
            for n in sorted(names)
        }
        outside = [t["outside_p50_ms"] for t in timings if t["outside_p50_ms"] is not None]
        row["phases_p50_ms"]["outside"] = statistics.median(outside) if outside else None
    return row


def print_table(result: dict[str, Any]) -> None:
    """The floor table on the console."""
    for graph, data in result["graphs"].items():
        print(f"\n{graph}: system, p50 ms, p99 ms, req/s, p50/floor, p99/floor, req/s/floor")
        for name, row in data["systems"].items():
            ratios = row.get("vs_floor")
            tail = (
                "  ".join(f"{ratios[k]['median']:.2f}x" for k in ("p50", "p99", "throughput"))
                if ratios
                else "-"
            )
            print(
                f"  {name:>18} {row['p50_ms']:7.2f} {row['p99_ms']:7.2f} {row['throughput']:8.0f}"
                f"  {tail}"
            )
            if "phases_p50_ms" in row:
                print(f"  {'':>18} phases: {row['phases_p50_ms']}")
    print("P1 (graphops / one-deployment Serve app, same path):")
    for key, figures in result["p1"].items():
        print(f"  {key}: " + ", ".join(f"{k} {v['median']:.2f}x" for k, v in figures.items()))
    print(json.dumps(result["verdict"], indent=1))


def markdown(result: dict[str, Any]) -> str:
    """The floor table, P1 and the phases of ``result`` as Markdown."""
    X, D = "\u00d7", "\u2013"  # the times sign and en dash of the docs

    def ratio(row: dict[str, Any], key: str) -> str:
        if "vs_floor" not in row:
            return "1"
        r = row["vs_floor"][key]
        return f"**{r['median']:.2f}{X}** ({r['min']:.2f}{D}{r['max']:.2f})"

    lines = []
    for graph, data in result["graphs"].items():
        lines += [
            f"**{graph}**",
            "",
            "| system | p50 (ms) | p99 (ms) | req/s at "
            f"{result['parameters']['concurrency']} | p50 ÷ floor | p99 ÷ floor | "
            "req/s ÷ floor |",
            "|---|---:|---:|---:|---|---|---|",
        ]
        for name, row in data["systems"].items():
            sp = row["spread"]
            lines.append(
                f"| {name} | {row['p50_ms']:.2f} ({sp['p50_ms']['min']:.2f}{D}"
                f"{sp['p50_ms']['max']:.2f}) | {row['p99_ms']:.2f} | {row['throughput']:,.0f} "
                f"({sp['throughput']['min']:,.0f}{D}{sp['throughput']['max']:,.0f}) | "
                f"{ratio(row, 'p50')} | {ratio(row, 'p99')} | {ratio(row, 'throughput')} |"
            )
        lines.append("")
    lines += [
        "| P1: graphops ÷ one-deployment Serve app, same path | p50 | p99 | req/s |",
        "|---|---|---|---|",
    ]
    for key, figures in result["p1"].items():
        cells = " | ".join(
            f"{figures[k]['median']:.2f}{X} ({figures[k]['min']:.2f}{D}{figures[k]['max']:.2f})"
            for k in ("p50", "p99", "throughput")
        )
        lines.append(f"| {key} | {cells} |")
    lines.append("")
    phased = [
        (graph, name, row["phases_p50_ms"])
        for graph, data in result["graphs"].items()
        for name, row in data["systems"].items()
        if "phases_p50_ms" in row
    ]
    if phased:
        names = sorted({n for *_, phases in phased for n in phases} - {"total", "outside"})
        names += ["total", "outside"]
        lines += [
            "| Server-Timing, median ms at concurrency 1 | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        for graph, name, phases in phased:
            cells = " | ".join("-" if phases.get(n) is None else f"{phases[n]:.3f}" for n in names)
            lines.append(f"| {graph} {name} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
