"""Online latency and throughput of graphops on Ray Serve, against hand-written baselines.

Load comes from a separate client process (`benchmarks._load`, aiohttp) over HTTP on loopback;
every system answers the same single-image digits request. Three comparisons, same run, same
machine, each repeated with the systems alternating and reported as medians and ratios:

(a) ``graphops`` (the digits graph compiled by graphops) vs ``hand_serve`` (the same work as a
    hand-written Serve app: ingress + model deployment, same model, batching and resources);
(b) ``fused`` vs ``unfused``: a graph with three CPU nodes before the model, compiled with and
    without fusion (2 vs 6 deployments);
(c) ``hand_serve`` vs ``uvicorn``: plain FastAPI under uvicorn, same work in-process, no Ray
    (a calibration row: what Serve itself costs on this machine).

Latency is measured at concurrency 1 (p50/p99 over ``--requests``); throughput at
``--concurrency`` for ``--seconds``. Run it with ``nox -s bench`` or::

    python -m benchmarks.online --repeats 3 --out benchmarks/results/online.json
"""

from __future__ import annotations

import argparse
import datetime
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

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"p50": 1.10, "p99": 1.25, "throughput": 0.9, "fusion_throughput": 1.5}
CPU_BUDGET = 0.75  # per application: two applications side by side fit a 2-CPU machine

PIPELINE = '''"""Bench graph: three CPU nodes before the digits model, then the postprocessing."""

import numpy as np

from graphops import Batching, Graph, Resources, TorchModel, model, node
from graphs.digits import DigitsRequest, DigitsResponse, prediction
from graphs.digits.network import DigitsNet


@node(resources=Resources(cpus=0.25))
def clipped(pixels: np.ndarray) -> np.ndarray:
    """Clamp to the valid intensity range."""
    return np.clip(pixels, 0, 16)


@node(resources=Resources(cpus=0.25))
def scaled(clipped: np.ndarray) -> np.ndarray:
    """0..16 -> 0..1."""
    return clipped / 16.0


@node(resources=Resources(cpus=0.25))
def features(scaled: np.ndarray) -> np.ndarray:
    """float32, contiguous, as the model wants."""
    return np.ascontiguousarray(scaled, dtype=np.float32)


@model(
    "models:/digits@champion",
    architecture=DigitsNet,
    batching=Batching(max_batch_size=64, max_wait_ms=5),
    resources=Resources(cpus=1),
)
def logits(features: np.ndarray, model: TorchModel) -> np.ndarray:
    """Class logits."""
    return model(features)


graph = Graph(
    name="pipeline",
    version="1.0.0",
    request=DigitsRequest,
    response=DigitsResponse,
    nodes=[clipped, scaled, features, logits, prediction],
)
'''


def load(
    url: str, body: Path, *, concurrency: int, requests: int = 0, seconds: float = 0
) -> dict[str, Any]:
    """Run the load generator in its own process; returns its JSON result."""
    limit = ["--requests", str(requests)] if requests else ["--seconds", str(seconds)]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks._load",
            url,
            str(body),
            "--concurrency",
            str(concurrency),
            *limit,
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(urls: dict[str, str], body: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Latency and throughput per system, ``args.repeats`` times, order rotating; medians."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in urls}
    names = list(urls)
    for repeat in range(args.repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            latency = load(urls[name], body, concurrency=1, requests=args.requests)
            saturated = load(urls[name], body, concurrency=args.concurrency, seconds=args.seconds)
            runs[name].append({"latency": latency, "saturated": saturated})
            print(
                f"  {name:>10}: p50 {latency['p50_ms']:.2f} ms  p99 {latency['p99_ms']:.2f} ms  "
                f"{saturated['throughput']:.0f} req/s (errors {latency['errors'] + saturated['errors']})",
                flush=True,
            )
    summary = {}
    for name, items in runs.items():
        summary[name] = {
            "p50_ms": statistics.median(r["latency"]["p50_ms"] for r in items),
            "p99_ms": statistics.median(r["latency"]["p99_ms"] for r in items),
            "throughput": statistics.median(r["saturated"]["throughput"] for r in items),
            "saturated_p50_ms": statistics.median(r["saturated"]["p50_ms"] for r in items),
            "errors": sum(r["latency"]["errors"] + r["saturated"]["errors"] for r in items),
            "runs": items,
        }
    return summary


def ratios(summary: dict[str, Any], system: str, baseline: str) -> dict[str, float]:
    """System / baseline for p50, p99 (lower is better) and throughput (higher is better)."""
    a, b = summary[system], summary[baseline]
    return {
        "p50": a["p50_ms"] / b["p50_ms"],
        "p99": a["p99_ms"] / b["p99_ms"],
        "throughput": a["throughput"] / b["throughput"],
    }


def wait_http(url: str, body: bytes, timeout: float = 120) -> None:
    """Poll until ``url`` answers 200 (uvicorn startup)."""
    import requests

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            headers = {"Content-Type": "application/json"}
            if requests.post(url, data=body, headers=headers, timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up within {timeout} s")


def main(argv: list[str] | None = None) -> int:
    """Train, start Ray + Serve, deploy each pair, load it from a client process, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300, help="Requests of a latency run.")
    parser.add_argument("--seconds", type=float, default=8.0, help="Length of a throughput run.")
    parser.add_argument("--concurrency", type=int, default=32, help="Clients of a throughput run.")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/online.json")
    args = parser.parse_args(argv)

    from ray import serve

    from benchmarks.serve_apps import hand_app
    from graphops.graph import load_graph
    from graphops.registry import Registry
    from graphops.runtime._ray import ensure_ray
    from graphops.runtime.online import deploy, free_port, start_http, undeploy

    result: dict[str, Any] = {
        "benchmark": "online latency and throughput over HTTP",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "parameters": {k: v for k, v in vars(args).items() if k != "out"}
        | {"cpu_budget_per_app": CPU_BUDGET},
        "targets": TARGETS,
    }
    with tempfile.TemporaryDirectory(prefix="graphops-bench-online-") as tmp:
        work = Path(tmp)
        repo = work / "repo"
        shutil.copytree(
            REPO / "graphs", repo / "graphs", ignore=shutil.ignore_patterns("__pycache__")
        )
        (repo / "graphs" / "pipeline").mkdir()
        (repo / "graphs" / "pipeline" / "__init__.py").write_text(PIPELINE)
        registry = Registry(work / ".graphops")
        digits = load_graph(repo, "digits")
        pinned = digits.trainer()(registry)  # type: ignore[misc]
        ensure_ray(repo, num_cpus=os.cpu_count())
        port = start_http(free_port())
        base = f"http://127.0.0.1:{port}"
        body = work / "body.json"
        from graphops.runtime.online import request_example

        body.write_text(json.dumps(request_example(digits)))

        print("(a) graphops vs a hand-written Serve app", flush=True)
        ours = deploy(digits, registry, port=port, cpu_budget=CPU_BUDGET)
        specs = {d.name: d.options() for d in ours.deployments}
        ingress = {k: v for k, v in specs["ingress"].items() if k != "name"}
        model = {k: v for k, v in specs["logits"].items() if k != "name"}
        batch = ours.deployments[1]
        serve.run(
            hand_app(
                str(repo),
                pinned.source,
                registry.tracking_uri,
                ingress,
                model,
                batch.max_batch_size or 64,
                batch.batch_wait_timeout_s or 0.005,
            ),
            name="hand",
            route_prefix="/hand",
            blocking=False,
        )
        a = measure({"graphops": ours.url, "hand_serve": f"{base}/hand"}, body, args)
        undeploy(ours.name)

        print("(c) hand-written Serve app vs plain FastAPI/uvicorn", flush=True)
        uvicorn_port = free_port()
        env = os.environ | {
            "BENCH_REPO": str(repo),
            "BENCH_SOURCE": pinned.source,
            "BENCH_TRACKING_URI": registry.tracking_uri,
        }
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "benchmarks.serve_apps:fastapi_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(uvicorn_port),
                "--log-level",
                "warning",
            ],
            cwd=REPO,
            env=env,
        )
        try:
            wait_http(f"http://127.0.0.1:{uvicorn_port}/digits", body.read_bytes())
            c = measure(
                {
                    "hand_serve": f"{base}/hand",
                    "uvicorn": f"http://127.0.0.1:{uvicorn_port}/digits",
                },
                body,
                args,
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
        undeploy("hand")

        print("(b) fused vs unfused (3 CPU nodes before the model)", flush=True)
        pipeline = load_graph(repo, "pipeline")
        fused = deploy(
            pipeline, registry, name="fused", route="/fused", port=port, cpu_budget=CPU_BUDGET
        )
        unfused = deploy(
            pipeline,
            registry,
            name="unfused",
            route="/unfused",
            port=port,
            fuse=False,
            cpu_budget=CPU_BUDGET,
        )
        b = measure({"fused": fused.url, "unfused": unfused.url}, body, args)
        result["deployments"] = {
            "fused": len(fused.deployments),
            "unfused": len(unfused.deployments),
        }
        undeploy("fused")
        undeploy("unfused")
        serve.shutdown()

    result["a_graphops_vs_hand_serve"] = {
        "systems": a,
        "ratios": ratios(a, "graphops", "hand_serve"),
    }
    result["b_fused_vs_unfused"] = {"systems": b, "ratios": ratios(b, "fused", "unfused")}
    result["c_hand_serve_vs_uvicorn"] = {"systems": c, "ratios": ratios(c, "hand_serve", "uvicorn")}
    ra, rb = result["a_graphops_vs_hand_serve"]["ratios"], result["b_fused_vs_unfused"]["ratios"]
    result["verdict"] = {
        "a_p50": ra["p50"] <= TARGETS["p50"],
        "a_p99": ra["p99"] <= TARGETS["p99"],
        "a_throughput": ra["throughput"] >= TARGETS["throughput"],
        "b_fusion_throughput": rb["throughput"] >= TARGETS["fusion_throughput"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {k: result[k]["ratios"] for k in result if k[:2] in ("a_", "b_", "c_")}, indent=2
        )
    )
    print(f"verdict: {result['verdict']}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
