"""Online latency and throughput of graphops on Ray Serve, against hand-written baselines.

Load comes from a separate client process (`benchmarks._load`, aiohttp) over HTTP on loopback;
every system answers the same single-image digits request. Three comparisons, same run, same
machine, each repeated with the systems alternating and reported as medians and ratios:

(a) P1: ``graphops`` (the digits graph deployed by graphops) vs ``hand_serve`` (the same work as
    a minimal hand-written Serve app: ONE deployment, `benchmarks.serve_apps.one_app`), both
    through Serve's proxy; ``hand_serve_two_deployments`` (the former baseline: ingress + model
    deployment with ``@serve.batch``, graphops' resources and batching) is an extra, labelled
    row with its own ratios. The floor and the other ingress paths: `benchmarks.floor`;
(b) ``fused`` vs ``unfused``: a graph with three CPU nodes before the model, compiled with and
    without fusion (2 vs 6 deployments);
(c) ``hand_serve`` (one deployment) vs ``uvicorn``: plain FastAPI under uvicorn, same work
    in-process, no Ray (a calibration row: what Serve's proxy path costs on this machine; the
    floor benchmark measures it with a leaner floor on every ingress path);
(d) ``experiment`` vs ``single``: P3, what an A/B experiment costs per request. The stable route
    under a 50/50 experiment between two applications of the same digits code, sticky key
    ``pixels``, split by the stable version's own ingress (`TrafficSplit` in its
    ``user_config``: its share answered in place, the other arm's by that application's model
    deployment called directly, no hop), vs one version answering alone. Both get the same 64
    different requests in turn, so the sticky key spreads them over both arms (the arm counts
    are in the result). Targets: p50 <= 1.10x and throughput >= 0.9x of single, as medians with
    the spread of the per-repeat ratios (each repeat measures both systems back to back, order
    alternating).
(e) a canary's 50/50 split in the stable ingress (no sticky key): ``split_same_code`` (the other
    version runs the same code: its model deployment called directly, no hop) and
    ``split_other_code`` (its ingress asked by handle, one hop) vs ``single``, same run, order
    rotating, ratios per repeat.

Latency is measured at concurrency 1 (p50/p99 over ``--requests``); throughput at
``--concurrency`` for ``--seconds``. Run it with ``nox -s bench`` or::

    python -m benchmarks.online --repeats 3 --out benchmarks/results/online.json
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

REPO = Path(__file__).resolve().parents[1]
TARGETS = {
    "p50": 1.10,
    "p99": 1.25,
    "throughput": 0.9,
    "fusion_throughput": 1.5,
    "p3_p50": 1.10,
    "p3_throughput": 0.9,
}
CPU_BUDGET = 0.75  # per application: two applications side by side fit a 2-CPU machine

PIPELINE = '''"""Bench graph: three CPU nodes before the digits model, then the postprocessing.

Self-contained (a replica imports only its own package's checked files): the request, response
and postprocessing as in digits, DigitsNet from a copy of digits' network.py.
"""

from typing import Annotated, TypedDict

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from graphops import Batching, Graph, Resources, TorchModel, model, node

from .network import DigitsNet


class DigitsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pixels: Annotated[list[Annotated[float, Field(ge=0, le=16)]], Field(min_length=64, max_length=64)]


class DigitsResponse(BaseModel):
    label: int
    confidence: float


class Prediction(TypedDict):
    label: np.ndarray
    confidence: np.ndarray


@node(resources=Resources(cpus=0.25))
def prediction(logits: np.ndarray) -> Prediction:
    """Most likely digit and its softmax probability."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    return {"label": probs.argmax(axis=1), "confidence": probs.max(axis=1)}


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
            load_1m = os.getloadavg()[0]  # the machine is shared: say how busy it was
            runs[name].append({"latency": latency, "saturated": saturated, "load_1m": load_1m})
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
    parser.add_argument(
        "--parts", default="abcde", help="Comparisons to run, e.g. d (the others stay in --out)."
    )
    args = parser.parse_args(argv)
    if not args.parts or not set(args.parts) <= set("abcde"):
        parser.error(f"Got --parts {args.parts!r}: use letters among a, b, c, d and e.")

    from ray import serve

    from graphops._net import free_port
    from graphops.graph import load_graph
    from graphops.registry import Registry
    from graphops.runtime.checkout import request_example
    from graphops.runtime.online import ensure_ray, start_http

    result: dict[str, Any] = {
        "benchmark": "online latency and throughput over HTTP",
        "date": utc_now(),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "parameters": {k: v for k, v in vars(args).items() if k != "out"}
        | {"cpu_budget_per_app": CPU_BUDGET},
        "targets": TARGETS,
    }
    kept = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if "floor" in kept:  # benchmarks.floor's result lives in the same file
        result["floor"] = kept["floor"]
    if set(args.parts) != set("abcde") and kept:  # keep the comparisons not rerun
        result = {k: v for k, v in kept.items() if k[:2] in PARTS.values()} | result
        result["date"] = kept.get("date", result["date"])  # of the last full run
    for part in args.parts:  # when each comparison was measured last
        result[f"{part}_date"] = utc_now()
    with tempfile.TemporaryDirectory(prefix="graphops-bench-online-") as tmp:
        work = Path(tmp)
        repo = work / "repo"
        shutil.copytree(
            REPO / "graphs", repo / "graphs", ignore=shutil.ignore_patterns("__pycache__")
        )
        (repo / "graphs" / "pipeline").mkdir()
        (repo / "graphs" / "pipeline" / "__init__.py").write_text(PIPELINE)
        shutil.copy(repo / "graphs/digits/network.py", repo / "graphs/pipeline/network.py")
        bench = Bench(args, repo, Registry(work / ".graphops"), work / "body.json")
        digits = load_graph(repo, "digits")
        bench.pinned = digits.trainer()(bench.registry)  # type: ignore[misc]
        ensure_ray(repo, num_cpus=os.cpu_count())
        bench.port = start_http(free_port())
        example = request_example(digits)
        bench.body.write_text(json.dumps(example))
        bench.bodies.write_text(varied(example, 64))
        if "a" in args.parts:
            result["a_graphops_vs_hand_serve"] = bench.graphops_vs_hand()
        if "c" in args.parts:
            result["c_hand_serve_vs_uvicorn"] = bench.hand_vs_uvicorn()
        if "b" in args.parts:
            result["b_fused_vs_unfused"], result["deployments"] = bench.fused_vs_unfused()
        if "d" in args.parts:
            result["d_experiment_vs_single"] = bench.experiment_vs_single()
        if "e" in args.parts:
            result["e_canary_split_vs_single"] = bench.canary_split_vs_single()
        serve.shutdown()
    verdict = {}
    if "a_graphops_vs_hand_serve" in result:
        ra = result["a_graphops_vs_hand_serve"]["ratios"]  # vs the one-deployment app
        verdict |= {
            "a_p50": ra["p50"] <= TARGETS["p50"],
            "a_p99": ra["p99"] <= TARGETS["p99"],
            "a_throughput": ra["throughput"] >= TARGETS["throughput"],
        }
    if "b_fused_vs_unfused" in result:
        rb = result["b_fused_vs_unfused"]["ratios"]
        verdict["b_fusion_throughput"] = rb["throughput"] >= TARGETS["fusion_throughput"]
    if "p3" in result.get("d_experiment_vs_single", {}):
        p3 = result["d_experiment_vs_single"]["p3"]
        verdict["p3_p50"] = p3["p50"]["median"] <= TARGETS["p3_p50"]
        verdict["p3_throughput"] = p3["throughput"]["median"] >= TARGETS["p3_throughput"]
    if "p3" in result.get("e_canary_split_vs_single", {}):
        p3 = result["e_canary_split_vs_single"]["p3"]
        verdict["e_p3_p50"] = p3["p50"]["median"] <= TARGETS["p3_p50"]
        verdict["e_p3_throughput"] = p3["throughput"]["median"] >= TARGETS["p3_throughput"]
    result["verdict"] = verdict
    write_json(args.out, result)
    compared = {k: v["ratios"] for k, v in result.items() if isinstance(v, dict) and "ratios" in v}
    print(json.dumps(compared, indent=2))
    print(f"verdict: {result['verdict']}; written to {args.out}")
    return 0


PARTS = {"a": "a_", "b": "b_", "c": "c_", "d": "d_", "e": "e_"}


class Bench:
    """The comparisons, sharing one Ray cluster, one Serve proxy and one trained model."""

    def __init__(self, args: argparse.Namespace, repo: Path, registry: Any, body: Path) -> None:
        self.args, self.repo, self.registry, self.body = args, repo, registry, body
        self.bodies = body.with_name("bodies.jsonl")  # 64 requests with different pixels
        self.pinned: Any = None
        self.port = 0

    @property
    def base(self) -> str:
        """The Serve proxy's address."""
        return f"http://127.0.0.1:{self.port}"

    def _hand(self) -> None:
        """The one-deployment hand-written app at /hand (`benchmarks.serve_apps.one_app`)."""
        from ray import serve

        from benchmarks.serve_apps import one_app

        spec = {
            "graph": "digits",
            "repo": str(self.repo),
            "source": self.pinned.source,
            "tracking_uri": self.registry.tracking_uri,
        }
        serve.run(one_app(spec), name="hand", route_prefix="/hand", blocking=False)
        _wait_app("hand")

    def _hand_two(self, ours: Any) -> None:
        """The former baseline at /hand2: ingress + model deployment shaped like graphops'."""
        from ray import serve

        from benchmarks.serve_apps import hand_app
        from graphops.runtime.schema import INGRESS_MAX_ONGOING

        specs = {d.name: d.options() for d in ours.deployments}
        ingress = {k: v for k, v in specs["ingress"].items() if k != "name"}
        if "logits" in specs:  # graphops runs the model in a deployment of its own: its shape
            model = {k: v for k, v in specs["logits"].items() if k != "name"}
            batch = ours.deployments[1]
            size, wait = batch.max_batch_size or 64, batch.batch_wait_timeout_s or 0.005
        else:  # colocated (one deployment): the shape graphops had before, at this CPU budget
            ingress = {
                "max_ongoing_requests": INGRESS_MAX_ONGOING,
                "ray_actor_options": {"num_cpus": CPU_BUDGET / 3},
            }
            model = {
                "max_ongoing_requests": 128,
                "ray_actor_options": {"num_cpus": 2 * CPU_BUDGET / 3},
            }
            size, wait = 64, 0.005
        serve.run(
            hand_app(
                str(self.repo),
                self.pinned.source,
                self.registry.tracking_uri,
                ingress,
                model,
                size,
                wait,
            ),
            name="hand2",
            route_prefix="/hand2",
            blocking=False,
        )
        _wait_app("hand2")

    def graphops_vs_hand(self) -> dict[str, Any]:
        """(a) P1: the digits graph deployed by graphops vs a one-deployment hand-written app."""
        from benchmarks.serve_apps import ONE_DEPLOYMENT
        from graphops.graph import load_graph
        from graphops.runtime.online import deploy, undeploy

        print("(a) graphops vs a hand-written Serve app (one deployment; two: extra)", flush=True)
        digits = load_graph(self.repo, "digits")
        ours = deploy(digits, self.registry, port=self.port, cpu_budget=CPU_BUDGET)
        self._hand()
        self._hand_two(ours)
        a = measure(
            {
                "graphops": ours.url,
                "hand_serve": f"{self.base}/hand",
                "hand_serve_two_deployments": f"{self.base}/hand2",
            },
            self.body,
            self.args,
        )
        undeploy(ours.name)
        undeploy("hand")
        undeploy("hand2")
        return {
            "path": "Serve's proxy",
            "hand_serve_options": ONE_DEPLOYMENT,
            "systems": a,
            "ratios": ratios(a, "graphops", "hand_serve"),
            "p1": p3(a, "graphops", "hand_serve"),
            "extra_ratios_vs_two_deployments": ratios(a, "graphops", "hand_serve_two_deployments"),
        }

    def hand_vs_uvicorn(self) -> dict[str, Any]:
        """(c) The hand-written Serve app vs plain FastAPI/uvicorn (what Serve costs)."""
        from graphops._net import free_port
        from graphops.runtime.online import undeploy

        print("(c) hand-written Serve app vs plain FastAPI/uvicorn", flush=True)
        self._hand()
        uvicorn_port = free_port()
        env = os.environ | {
            "BENCH_REPO": str(self.repo),
            "BENCH_SOURCE": self.pinned.source,
            "BENCH_TRACKING_URI": self.registry.tracking_uri,
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
            wait_http(f"http://127.0.0.1:{uvicorn_port}/digits", self.body.read_bytes())
            c = measure(
                {
                    "hand_serve": f"{self.base}/hand",
                    "uvicorn": f"http://127.0.0.1:{uvicorn_port}/digits",
                },
                self.body,
                self.args,
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
        undeploy("hand")
        return {"systems": c, "ratios": ratios(c, "hand_serve", "uvicorn")}

    def fused_vs_unfused(self) -> tuple[dict[str, Any], dict[str, int]]:
        """(b) Three CPU nodes before the model, compiled with and without fusion."""
        from graphops.graph import load_graph
        from graphops.runtime.online import deploy, undeploy

        print("(b) fused vs unfused (3 CPU nodes before the model)", flush=True)
        pipeline = load_graph(self.repo, "pipeline")
        common = {"port": self.port, "cpu_budget": CPU_BUDGET}
        fused = deploy(pipeline, self.registry, name="fused", route="/fused", **common)
        unfused = deploy(
            pipeline, self.registry, name="unfused", route="/unfused", fuse=False, **common
        )
        b = measure({"fused": fused.url, "unfused": unfused.url}, self.body, self.args)
        counts = {"fused": len(fused.deployments), "unfused": len(unfused.deployments)}
        undeploy("fused")
        undeploy("unfused")
        return {"systems": b, "ratios": ratios(b, "fused", "unfused")}, counts

    def experiment_vs_single(self) -> dict[str, Any]:
        """(d) P3: a same-code A/B experiment split by the stable ingress vs one version alone."""
        import requests

        from graphops.graph import load_graph
        from graphops.runtime.online import deploy, undeploy
        from graphops.runtime.split import SPLIT_ROUTE, SplitArm, SplitReport, TrafficSplit

        print("(d) a same-code A/B experiment (ingress split, sticky) vs a single version")
        digits = load_graph(self.repo, "digits")
        common = {"port": self.port, "cpu_budget": 0.6}  # three applications fit 2 CPUs
        single = deploy(digits, self.registry, **common)
        other = deploy(digits, self.registry, name="digits-b", route="/_arm/digits-b", **common)
        split = TrafficSplit(
            name="bench-ab",
            purpose="experiment",
            own_version="a",
            arms=(
                SplitArm(app=other.name, version="b", content_hash=digits.content_hash, weight=50),
            ),
            sticky_key="pixels",
        )
        ab = deploy(digits, self.registry, name="digits-ab", route="/ab", split=split, **common)
        d = measure({"experiment": ab.url, "single": single.url}, self.bodies, self.args)
        time.sleep(1.5)  # the ingress replicas flush their counters every second
        report = SplitReport.model_validate_json(
            requests.get(ab.url + SPLIT_ROUTE, timeout=30).content
        )
        for name in (ab.name, single.name, other.name):
            undeploy(name)
        figures = ratios(d, "experiment", "single")
        figures["p50_added_ms"] = d["experiment"]["p50_ms"] - d["single"]["p50_ms"]
        return {
            "systems": d,
            "ratios": figures,
            "p3": p3(d, "experiment", "single"),
            "arm_requests": {a.version: a.raw["requests"] for a in report.arms},
            "same_code": report.same_code,
        }

    def canary_split_vs_single(self) -> dict[str, Any]:
        """(e) A canary's 50/50 split in the stable ingress (same code, other code) vs single."""
        from graphops.graph import load_graph
        from graphops.runtime.online import deploy, undeploy
        from graphops.runtime.split import SplitArm, TrafficSplit

        print("(e) a canary's 50/50 split in the stable ingress vs a single version")
        digits = load_graph(self.repo, "digits")
        common = {"port": self.port, "cpu_budget": 0.45}  # four applications fit 2 CPUs
        single = deploy(digits, self.registry, **common)
        other = deploy(digits, self.registry, name="digits-b", route="/_arm/digits-b", **common)
        splits = {}
        for route, content_hash in (("/split-same", digits.content_hash), ("/split-other", None)):
            split = TrafficSplit(  # content hash None: the other code path (its ingress asked)
                name=f"bench{route.replace('/', '-')}",
                purpose="rollout",
                own_version="a",
                arms=(SplitArm(app=other.name, version="b", content_hash=content_hash, weight=50),),
            )
            name = route.strip("/")
            splits[name] = deploy(
                digits, self.registry, name=name, route=route, split=split, **common
            )
        e = measure(
            {
                "split_same_code": splits["split-same"].url,
                "single": single.url,
                "split_other_code": splits["split-other"].url,
            },
            self.bodies,
            self.args,
        )
        for name in (*splits, single.name, other.name):
            undeploy(name)
        return {
            "systems": e,
            "ratios": ratios(e, "split_same_code", "single"),
            "ratios_other_code": ratios(e, "split_other_code", "single"),
            "p3": p3(e, "split_same_code", "single"),
            "p3_other_code": p3(e, "split_other_code", "single"),
        }


def _wait_app(name: str, timeout_s: float = 300) -> None:
    """Poll Serve until application ``name`` runs (it was deployed without blocking)."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = serve.status().applications.get(name)
        if status is not None and status.status == "RUNNING":
            return
        if status is not None and status.status == "DEPLOY_FAILED":
            raise RuntimeError(f"{name} failed to deploy: {status.message}")
        time.sleep(0.25)
    raise RuntimeError(f"{name} did not run within {timeout_s} s")


def varied(example: dict[str, Any] | None, count: int) -> str:
    """``count`` requests like ``example``, each with other pixels (JSON lines)."""
    import random

    rng = random.Random(0)
    assert example is not None and "pixels" in example  # the digits graph's request
    rows = [
        example | {"pixels": [rng.randint(0, 16) for _ in example["pixels"]]} for _ in range(count)
    ]
    return "\n".join(json.dumps(r) for r in rows) + "\n"


def p3(summary: dict[str, Any], system: str, baseline: str) -> dict[str, dict[str, float]]:
    """Per-repeat ratios system/baseline (p50, throughput): median, min and max of each."""
    pairs = list(zip(summary[system]["runs"], summary[baseline]["runs"], strict=True))
    p50 = [a["latency"]["p50_ms"] / b["latency"]["p50_ms"] for a, b in pairs]
    rate = [a["saturated"]["throughput"] / b["saturated"]["throughput"] for a, b in pairs]
    return {
        name: {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}
        for name, xs in (("p50", p50), ("throughput", rate))
    }


if __name__ == "__main__":
    sys.exit(main())
