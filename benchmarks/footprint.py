"""What an idle graph costs on a cluster, and the options that cut it (`nox -s bench -- footprint`).

One local cluster (Serve's proxy, the path `serving.scale_to_zero` needs), the graphs trained
into a throwaway registry, then for each graph and each option one application deployed, warmed
by one request, left idle, and measured: its replica processes (Ray's actor table: every actor
named ``SERVE_REPLICA::<app>#...``), their memory by psutil (RSS; USS, the pages only that
process holds; PSS, shared pages divided among the processes sharing them, the fair share of
forked workers), their CPU while idle, the CPUs they reserve, and whether torch's or XGBoost's
library is mapped in them. With ``scale_to_zero`` the cold start is measured too: the first
request's latency after the ingress went to 0 replicas. Serve's controller and proxy are the
cluster's, shared by every graph: measured once, apart.

    python -m benchmarks.footprint [--graphs digits,fraud] [--idle-s 5] [--cold-repeats 3]

Writes benchmarks/results/footprint.json (the ``isolation`` key, written by
tests/reliability/test_isolation.py, is kept) and prints the table of docs/performance.md.
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

from benchmarks._report import REPO, machine, utc_now, write_json

OUT = REPO / "benchmarks" / "results" / "footprint.json"
TARGET_MB = 150
"""The target: an idle graph in dev costs at most this much cluster memory (or 0)."""
CPU_BUDGET = 0.9
"""dev's ``cluster.app_cpu_budget``."""
LIBRARIES = {
    "torch": "libtorch",
    "xgboost": "libxgboost",
    "onnxruntime": "onnxruntime",
    "sklearn": "/sklearn/",
    "scipy": "/scipy/",
    "pandas": "/pandas/",
    "pyarrow": "libarrow",
}
"""Names in a process's memory map that say it loaded that library."""
FLOOR = "floor"
"""The application of the floor row: one Serve deployment that answers ``{}``, no graphops."""


def options() -> dict[str, dict[str, Any]]:
    """Each option measured: `deploy` keyword arguments and the serving config it reads."""
    from graphops.runtime.serving import ServingConfig

    return {
        "default (colocated)": {"serving": ServingConfig()},
        "not colocated": {"serving": ServingConfig(colocate=False), "colocate": False},
        "ingress_cpus 0.05": {"serving": ServingConfig(ingress_cpus=0.05)},
        "scale_to_zero": {"serving": ServingConfig(scale_to_zero=True, idle_s=IDLE_S)},
    }


IDLE_S = 5.0
"""``serving.idle_s`` of the scale-to-zero option here (dev's default is 300 s)."""


def _alive(prefixes: tuple[str, ...]) -> dict[str, int]:
    """Live actors whose name starts with one of ``prefixes``: name -> pid.

    From GCS's actor table: Ray's state API needs the dashboard, which a local cluster of
    graphops does not run.
    """
    from ray._private.state import actors

    return {
        a["Name"]: a["Pid"]
        for a in actors(actor_state_name="ALIVE").values()
        if a["Name"] and a["Name"].startswith(prefixes) and a["Pid"]
    }


def replica_pids(app: str) -> dict[str, int]:
    """The live replica actors of ``app``: actor name -> pid."""
    return _alive((f"SERVE_REPLICA::{app}#",))


def serve_system_pids() -> dict[str, int]:
    """Serve's controller and proxies: the cluster's own, shared by every graph."""
    return _alive(("SERVE_CONTROLLER", "SERVE_PROXY"))


def process_figures(pids: dict[str, int], idle_s: float) -> list[dict[str, Any]]:
    """Memory (MB) and idle CPU (% of one core over ``idle_s``) of each process."""
    import psutil

    procs = {name: psutil.Process(pid) for name, pid in pids.items()}
    before = {name: p.cpu_times() for name, p in procs.items()}
    time.sleep(idle_s)
    rows = []
    for name, p in procs.items():
        after = p.cpu_times()
        busy = (after.user + after.system) - (before[name].user + before[name].system)
        mem = p.memory_full_info()
        maps = Path(f"/proc/{p.pid}/maps").read_text(errors="replace")
        rows.append(
            {
                "actor": name,
                "pid": p.pid,
                "rss_mb": round(mem.rss / 2**20, 1),
                "uss_mb": round(mem.uss / 2**20, 1),
                "pss_mb": round(mem.pss / 2**20, 1),
                "idle_cpu_pct": round(100 * busy / idle_s, 2),
                "libraries": sorted(k for k, v in LIBRARIES.items() if v in maps),
            }
        )
    return rows


def total(rows: list[dict[str, Any]], key: str) -> float:
    """The sum of ``key`` over ``rows``, rounded."""
    return round(sum(r[key] for r in rows), 1)


def wait_replicas(app: str, count: int, timeout_s: float) -> float:
    """Seconds until ``app`` has ``count`` live replicas (raises after ``timeout_s``)."""
    started = time.monotonic()
    while len(replica_pids(app)) != count:
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{app}: not {count} replicas after {timeout_s:g} s")
        time.sleep(0.5)
    return time.monotonic() - started


def post(url: str, body: bytes) -> float:
    """One request; its latency in ms (raises on an answer other than 200)."""
    import requests

    t0 = time.perf_counter()
    answer = requests.post(
        url, data=body, headers={"Content-Type": "application/json"}, timeout=120
    )
    ms = (time.perf_counter() - t0) * 1000
    if answer.status_code != 200:
        raise RuntimeError(f"{url}: {answer.status_code} {answer.text[:300]}")
    return ms


def measure_one(
    package: Any, registry: Any, option: str, spec: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Deploy ``package`` with ``option``, warm it, leave it idle and measure it."""
    from graphops.runtime.checkout import request_example
    from graphops.runtime.online import deploy, undeploy

    slug = option.split(" ")[0].replace("_", "-")
    name = f"{package.name}-{slug}"
    kwargs = {k: v for k, v in spec.items() if k != "serving"}
    online = deploy(
        package,
        registry,
        name=name,
        route=f"/{name}",
        port=args.port,
        cpu_budget=CPU_BUDGET,
        serving=spec["serving"],
        **kwargs,
    )
    body = json.dumps(request_example(package)).encode()
    warm = [post(online.url, body) for _ in range(5)]
    row: dict[str, Any] = {
        "graph": package.name,
        "option": option,
        "deployments": [d.name for d in online.deployments],
        "cpus_reserved": round(sum(d.cpus * d.scaling.replicas for d in online.deployments), 3),
        "warm_p50_ms": round(statistics.median(warm), 1),
    }
    try:
        if spec["serving"].scale_to_zero:
            row["processes_at_start"] = len(replica_pids(name))
            colds, downs = [], []
            for _ in range(args.cold_repeats):
                downs.append(wait_replicas(name, 0, IDLE_S + 60))
                colds.append(post(online.url, body))
            procs = process_figures(replica_pids(name), 0.5)  # awake again: what it holds then
            row |= {
                "to_zero_after_idle_s": IDLE_S,
                "to_zero_s": [round(s, 1) for s in downs],
                "cold_start_ms": [round(ms) for ms in colds],
                "cold_start_p50_ms": round(statistics.median(colds)),
                "awake_pss_mb": total(procs, "pss_mb"),
                "awake_uss_mb": total(procs, "uss_mb"),
                "awake_libraries": sorted({lib for p in procs for lib in p["libraries"]}),
            }
            wait_replicas(name, 0, IDLE_S + 60)
            procs = process_figures(replica_pids(name), args.idle_s)
        else:
            time.sleep(1)
            procs = process_figures(replica_pids(name), args.idle_s)
    finally:
        undeploy(name)
    return row | {
        "processes": len(procs),
        "rss_mb": total(procs, "rss_mb"),
        "uss_mb": total(procs, "uss_mb"),
        "pss_mb": total(procs, "pss_mb"),
        "idle_cpu_pct": total(procs, "idle_cpu_pct"),
        "replicas": procs,
    }


def measure_floor(args: argparse.Namespace) -> dict[str, Any]:
    """What any Serve replica holds: a one-deployment no-op app, measured as the graphs are."""
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0.05})
    class Noop:
        async def __call__(self, request: Any) -> dict[str, Any]:
            return {}

    serve.run(Noop.bind(), name=FLOOR, route_prefix=f"/{FLOOR}")
    post(f"http://127.0.0.1:{args.port}/{FLOOR}", b"{}")
    time.sleep(1)
    try:
        procs = process_figures(replica_pids(FLOOR), args.idle_s)
    finally:
        serve.delete(FLOOR)
    return {
        "graph": "(none: a no-op Serve app)",
        "option": "the floor of one Serve replica",
        "deployments": ["Noop"],
        "cpus_reserved": 0.05,
        "processes": len(procs),
        "rss_mb": total(procs, "rss_mb"),
        "uss_mb": total(procs, "uss_mb"),
        "pss_mb": total(procs, "pss_mb"),
        "idle_cpu_pct": total(procs, "idle_cpu_pct"),
        "replicas": procs,
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of docs/performance.md."""
    lines = [
        "| graph | option | processes | RSS MB | USS MB | PSS MB | idle CPU % | CPUs reserved "
        "| libraries | cold start ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        libs = sorted({lib for p in r["replicas"] for lib in p["libraries"]})
        libs = libs or r.get("awake_libraries", [])
        cold = r.get("cold_start_p50_ms")
        lines.append(
            f"| {r['graph']} | {r['option']} | {r['processes']} | {r['rss_mb']:g} "
            f"| {r['uss_mb']:g} | {r['pss_mb']:g} | {r['idle_cpu_pct']:g} "
            f"| {0 if r['processes'] == 0 else r['cpus_reserved']:g} "
            f"| {', '.join(libs) or '-'} | {cold if cold is not None else '-'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Train, start one local cluster, measure each graph under each option, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", default="digits,fraud")
    parser.add_argument("--idle-s", type=float, default=5.0, help="CPU sampling window.")
    parser.add_argument("--cold-repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    from graphops._net import free_port
    from graphops.graph import load_graph
    from graphops.registry import Registry
    from graphops.runtime.online import ensure_ray, start_http
    from graphops.runtime.serving import ServingConfig

    kept = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result: dict[str, Any] = {
        "benchmark": "footprint of an idle graph on a local cluster",
        "date": utc_now(),
        "machine": machine(),
        "parameters": {k: str(v) for k, v in vars(args).items() if k != "out"}
        | {"cpu_budget_per_app": CPU_BUDGET, "scale_to_zero_idle_s": IDLE_S},
        "target_mb": TARGET_MB,
    }
    with tempfile.TemporaryDirectory(prefix="graphops-bench-footprint-") as tmp:
        work = Path(tmp)
        repo = work / "repo"
        shutil.copytree(
            REPO / "graphs", repo / "graphs", ignore=shutil.ignore_patterns("__pycache__")
        )
        registry = Registry(work / ".graphops")
        packages = [load_graph(repo, g) for g in args.graphs.split(",")]
        for package in packages:
            trainer = package.trainer()
            if trainer is not None:
                trainer(registry)
        ensure_ray(repo, num_cpus=4, serving=ServingConfig(ingress="proxy"))
        args.port = start_http(free_port())
        rows = [measure_floor(args)]
        for package in packages:
            for option, spec in options().items():
                print(f"{package.name}: {option} ...", file=sys.stderr, flush=True)
                rows.append(measure_one(package, registry, option, spec, args))
        system = process_figures(serve_system_pids(), args.idle_s)
        result["rows"] = rows
        result["cluster_shared"] = {
            "what": "Serve's controller and proxy: one per cluster, shared by every graph",
            "pss_mb": total(system, "pss_mb"),
            "rss_mb": total(system, "rss_mb"),
            "processes": system,
        }
        from ray import serve

        serve.shutdown()
    for row in rows:
        row["meets_target"] = row["pss_mb"] <= TARGET_MB
    if "isolation" in kept:
        result["isolation"] = kept["isolation"]
    write_json(args.out, result)
    print(table(rows))
    print(f"\ncluster (shared): {result['cluster_shared']['pss_mb']} MB PSS; written to {args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    raise SystemExit(main())
