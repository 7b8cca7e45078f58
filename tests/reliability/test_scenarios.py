"""Reliability scenarios: each measures one fault under load and records failed/total.

Load comes from a separate process on loopback (`_load.Load`), bounded in count and time. The
asserts state the promise (no request lost, refusals are 4xx/5xx answers, never hangs); the
figures go to benchmarks/results/reliability.json whatever they are.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import requests
from ray import serve

from graphops.errors import GraphOpsError
from graphops.graph import GraphPackage, ModelNode
from graphops.registry import Registry
from graphops.runtime import read_rows
from graphops.runtime.online import OnlineApp, deploy, undeploy
from graphops.runtime.schema import DeploymentOverride
from tests.integration.test_registry import register_tiny
from tests.reliability._load import Load, SlowClients
from tests.reliability.conftest import Rows

pytestmark = pytest.mark.usefixtures("champion")

APP = "digits-rel"
REPO = Path(__file__).resolve().parents[2]
LAUGHS = 'lol0: &l0 "lol"\n' + "".join(
    f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)
)


@pytest.fixture(scope="module")
def body(digits: GraphPackage) -> bytes:
    assert digits.validation_dataset is not None
    row = read_rows(digits.validation_dataset)[0]
    return json.dumps({"pixels": row["pixels"]}).encode()


@pytest.fixture(scope="module")
def two_replicas(digits: GraphPackage, registry: Registry, serve_port: int) -> Iterator[OnlineApp]:
    """digits with two replicas of every deployment (ingress and model)."""
    two = DeploymentOverride(replicas=2)
    online = deploy(
        digits,
        registry,
        name=APP,
        port=serve_port,
        route=f"/{APP}",
        overrides={"ingress": two, "logits": two},
    )
    try:
        yield online
    finally:
        undeploy(online.name)


def kill_one(deployment: str) -> str:
    """Kill one replica of ``deployment`` (its actor, no restart): what a crash or OOM does."""
    prefix = f"SERVE_REPLICA::{APP}#{deployment}#"
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
    name = sorted(n for n in names if n.startswith(prefix))[0]
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    return name


def running(deployment: str) -> int:
    status = serve.status().applications[APP].deployments[deployment]
    return int(status.replica_states.get("RUNNING", 0))


@pytest.mark.parametrize("deployment", ["logits", "ingress"])
def test_replica_kill_with_two_replicas(
    two_replicas: OnlineApp, body: bytes, deployment: str, rows: Rows
) -> None:
    load = Load(two_replicas.url, body, rps=20, seconds=10).start()
    time.sleep(4)
    killed_at = time.monotonic()
    kill_one(deployment)
    result = load.result()
    while running(deployment) < 2:
        assert time.monotonic() - killed_at < 120, "replica not replaced within 120 s"
        time.sleep(0.25)
    recovery = time.monotonic() - killed_at
    rows.add(
        f"replica kill, 2 replicas: one {deployment} replica, 20 req/s",
        failed=result.failed,
        total=result.total,
        recovery_s=round(recovery, 1),
        p50_ms=round(result.percentile(0.5), 1),
        p99_ms=round(result.percentile(0.99), 1),
        failures=result.failures[:10],
    )
    if deployment == "ingress":
        # Neither Serve's proxy nor HAProxy retries a request whose ingress replica dies while
        # it holds it: those few (in flight at that instant) fail at once, never hang: a 500 from
        # the proxy; on the HAProxy path a 500/502, or the connection closed without an answer
        # (seen once in 200 requests in CI-local, 2026-12-08).
        failed_as = {"500", "502", "ConnectionError"}
        assert result.failed <= 3 and all(what in failed_as for _, what in result.failures)
    else:  # the ingress retries a stage call whose replica died, on the other replica
        assert result.failed == 0, result.failures


def test_slow_clients_do_not_starve_good_requests(
    two_replicas: OnlineApp, body: bytes, serve_port: int, rows: Rows
) -> None:
    baseline = Load(two_replicas.url, body, rps=20, seconds=6).start().result()
    slow = SlowClients(serve_port, f"/{APP}", count=300, seconds=20).start()
    time.sleep(1.5)  # the slow bodies are in
    during = Load(two_replicas.url, body, rps=20, seconds=6).start().result()
    held = slow.result()
    rows.add(
        "300 slow clients (Content-Length 1,000, 10 bytes sent), 20 req/s of good requests",
        failed=during.failed,
        total=during.total,
        recovery_s=0.0,
        p50_ms=round(during.percentile(0.5), 1),
        p99_ms=round(during.percentile(0.99), 1),
        baseline_p50_ms=round(baseline.percentile(0.5), 1),
        baseline_p99_ms=round(baseline.percentile(0.99), 1),
        slow_clients=held,
    )
    assert during.failed == 0, (during.statuses, during.samples)
    assert set(held) <= {"408", "503"}, held  # every slow client got an answer, none was held


def test_malformed_flood_is_all_4xx_and_the_graph_stays_healthy(
    two_replicas: OnlineApp, rows: Rows
) -> None:
    malformed = json.dumps({"pixels": [True] * 64}).encode()
    flood = Load(two_replicas.url, malformed, rps=200, seconds=1, ok_status=422).start().result()
    health = requests.get(two_replicas.health_url, timeout=30)
    rows.add(
        "200 concurrent malformed requests (booleans as pixels)",
        failed=flood.failed,
        total=flood.total,
        recovery_s=0.0,
        statuses=flood.statuses,
        health_after=health.status_code,
    )
    assert flood.failed == 0, flood.statuses
    assert health.status_code == 200


@pytest.mark.parametrize("kind", ["billion laughs in release.yaml", "100 MB release.yaml"])
def test_config_bombs_are_refused_fast(tmp_path: Path, kind: str, rows: Rows) -> None:
    shutil.copytree(REPO / "environments", tmp_path / "environments")
    shutil.copytree(
        REPO / "graphs", tmp_path / "graphs", ignore=shutil.ignore_patterns("__pycache__")
    )
    release = tmp_path / "environments" / "dev" / "release.yaml"
    if kind.startswith("billion"):
        release.write_text(
            "graphs:\n  digits:\n    deployments:\n"
            + "".join("      " + line + "\n" for line in LAUGHS.splitlines())
        )
    else:
        release.write_bytes(b"graphs: {}\n" + b"#" * 100_000_000 + b"\n")
    started = time.perf_counter()
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "graphops"),
            "--repo",
            str(tmp_path),
            "render",
            "--check",
            "--env",
            "dev",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.perf_counter() - started
    said = (done.stdout + done.stderr).replace("\n", " ")
    rows.add(
        f"config bomb: {kind} through `graphops render --check`",
        failed=0 if done.returncode != 0 else 1,
        total=1,
        recovery_s=0.0,
        seconds_incl_cli_start=round(seconds, 2),
    )
    assert done.returncode != 0
    assert "anchor" in said or "bytes" in said, said


def test_weights_tampered_before_validation_are_refused(
    tmp_path: Path, digits: GraphPackage, rows: Rows
) -> None:
    own = Registry(tmp_path / ".graphops")
    node = digits.graph.node("logits")
    assert isinstance(node, ModelNode)
    pinned = register_tiny(own, node, seed=0)
    weights = next((tmp_path / ".graphops" / "mlartifacts").rglob("weights.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(GraphOpsError) as caught:
        own.resolve(pinned.uri)
    rows.add(
        "weights changed (one bit) in the store before validation",
        failed=0,
        total=1,
        recovery_s=0.0,
        message=str(caught.value).splitlines()[0][:300],
    )
    assert "changed in the store after registration" in str(caught.value)
