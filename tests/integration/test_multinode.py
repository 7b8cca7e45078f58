"""Heterogeneous multi-node, for real: a head, a CPU worker node and a worker node advertising a
logical GPU (`ray start --num-gpus 1`, no hardware), all on 127.0.0.1 with token auth. digits is
validated on it (Ray Data) and applied to an environment with `gpus: true` (Ray Serve): the model
stage lands on the GPU node, CPU work runs on the worker nodes (the CPU node first; Ray spills CPU
tasks onto a GPU node's free CPUs, which the test records), and no GPU request is dropped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest
import requests

from graphops.controller.apply import apply
from graphops.controller.promote import promote
from graphops.controller.status import status
from graphops.demo import services
from graphops.registry import Registry
from tests.integration._repos import dev_repo

pytestmark = pytest.mark.usefixtures("champion")

GRAPHOPS = str(Path(sys.executable).with_name("graphops"))


class Nodes:
    def __init__(self, head: services.Service, cpu: str, gpu: str, head_id: str) -> None:
        self.head, self.cpu, self.gpu, self.head_id = head, cpu, gpu, head_id

    @property
    def token(self) -> str:
        return self.head.token or ""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.head.ports['port']}"

    def name(self, node_id: str) -> str:
        return {self.head_id: "head", self.cpu: "cpu", self.gpu: "gpu"}.get(node_id, node_id)


def _state(head: services.Service, what: str, **params: Any) -> list[dict[str, Any]]:
    """Ray's state API (the dashboard, with the token): nodes, actors, tasks."""
    answer = requests.get(
        f"{head.url}/api/v0/{what}",
        params={"limit": 10000, "detail": "true", **params},
        headers={"Authorization": f"Bearer {head.token}"},
        timeout=30,
    )
    answer.raise_for_status()
    rows: list[dict[str, Any]] = answer.json()["data"]["result"]["result"]
    return rows


def _joined(head: services.Service, worker: services.Service, timeout_s: float = 90) -> None:
    """Wait until ``worker``'s node is ALIVE in the cluster; raise if its process exited."""
    before = len([n for n in _state(head, "nodes") if n.get("state") == "ALIVE"])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not worker.alive():
            raise RuntimeError(Path(worker.log).read_text()[-2000:])
        if len([n for n in _state(head, "nodes") if n.get("state") == "ALIVE"]) > before:
            return
        time.sleep(2)
    raise RuntimeError(f"{worker.name} did not join in {timeout_s:.0f} s")


def _with_retries(
    start: Any, started: list[services.Service], ready: Any, attempts: int = 3
) -> services.Service:
    """Start a node, retried: on this shared, busy machine a raylet can miss Ray's fixed 30 s."""
    for attempt in range(attempts):
        service = start()
        try:
            ready(service)
        except Exception:
            services.stop(service)
            if attempt == attempts - 1:
                raise
            time.sleep(5)
            continue
        started.append(service)
        return service
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def nodes(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    """Three Ray nodes on this machine (graphops.demo.services); each stopped by its pid."""
    taken: set[int] = set()
    work = tmp_path_factory.mktemp("ray")
    started: list[services.Service] = []
    try:
        head = _with_retries(
            lambda: services.start_ray(
                "ray-mn",
                work,
                dashboard_port=None,
                serve_port=None,
                tracking_uri=registry.tracking_uri,
                num_cpus=0,  # the head runs the GCS, the dashboard and Serve's controller
                taken=taken,
            ),
            started,
            lambda service: services.wait_ready(service),
        )
        for name, cpus, gpus in (("cpu", 2, 0), ("gpu", 1, 1)):
            _with_retries(
                lambda name=name, cpus=cpus, gpus=gpus: services.start_ray_worker(
                    name,
                    head,
                    num_cpus=cpus,
                    num_gpus=gpus,
                    tracking_uri=registry.tracking_uri,
                    taken=taken,
                ),
                started,
                lambda service: _joined(head, service),
            )
        alive = [n for n in _state(head, "nodes") if n.get("state") == "ALIVE"]
        assert len(alive) == 3, alive
        by_gpu = {float(n["resources_total"].get("GPU", 0)): n for n in alive}
        heads = [n for n in alive if n.get("is_head_node")]
        cpus = [
            n for n in alive if not n.get("is_head_node") and not n["resources_total"].get("GPU")
        ]
        yield Nodes(head, cpus[0]["node_id"], by_gpu[1.0]["node_id"], heads[0]["node_id"])
    finally:
        for service in reversed(started):
            services.stop(service)


@pytest.fixture(scope="module")
def repo(repo_copy: Path, nodes: Nodes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """graphs/ and environments/, dev on the three-node cluster with `gpus: true`."""
    root = tmp_path_factory.mktemp("multinode") / "repo"

    def on_nodes(data: dict) -> None:
        data["cluster"] |= {
            "dashboard": nodes.head.url,
            "serve_url": f"http://127.0.0.1:{nodes.head.ports['serve']}",
            "token_env": "GRAPHOPS_MN_TOKEN",
            "gpus": True,
        }
        data["code"]["store"] = f"file://{root.parent / 'packages'}"
        data["http_port"] = nodes.head.ports["serve"]

    return dev_repo(repo_copy, root, on_nodes)


def _env(nodes: Nodes, registry: Registry) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GRAPHOPS_REPO"}
    return env | {
        "RAY_ADDRESS": nodes.address,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": nodes.token,
        "GRAPHOPS_MN_TOKEN": nodes.token,
        "MLFLOW_TRACKING_URI": registry.tracking_uri,
    }


def test_ray_data_runs_model_actors_on_the_gpu_node(
    repo: Path, nodes: Nodes, registry: Registry
) -> None:
    ran = subprocess.run(
        [GRAPHOPS, "--repo", str(repo), "validate", "digits", "--no-parity"],
        env=_env(nodes, registry),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-4000:]
    assert "no GPU" not in ran.stdout  # no GPU request dropped
    actors = [a for a in _state(nodes.head, "actors") if "MapWorker" in a.get("class_name", "")]
    tasks = [t for t in _state(nodes.head, "tasks") if t.get("node_id")]
    placed_actors = sorted({(a["class_name"], nodes.name(a["node_id"])) for a in actors})
    placed_tasks = sorted({(t["name"], nodes.name(t["node_id"])) for t in tasks})
    print("Ray Data actors:", json.dumps(placed_actors), "tasks:", json.dumps(placed_tasks))
    # The model stage's actor pool asks for a GPU: only the GPU node can hold it.
    assert actors and all(a["node_id"] == nodes.gpu for a in actors), placed_actors
    # CPU stages are tasks asking for CPUs only: Ray prefers nodes without GPUs for them (and
    # the CPU node runs them) but spills onto the GPU node's free CPUs when the CPU node is full,
    # measured here; never onto the head, which declares no CPUs.
    cpu_work = [t for t in tasks if "_StageTask" in t["name"] or "Read" in t["name"]]
    assert cpu_work and any(t["node_id"] == nodes.cpu for t in cpu_work), placed_tasks
    assert all(t["node_id"] != nodes.head_id for t in cpu_work), placed_tasks


def test_serve_places_the_model_stage_on_the_gpu_node(
    repo: Path, nodes: Nodes, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPHOPS_MN_TOKEN", nodes.token)
    promoted = promote(repo, "digits", "dev", registry)
    with git.Repo(repo) as r:
        r.git.merge(promoted.branch)
    result = apply(repo, "dev", timeout_s=300)
    assert result.started
    [row] = status(repo, "dev")
    assert row.live == "RUNNING"
    placement = {k.split("/", 1)[1]: [nodes.name(n) for n in v] for k, v in row.placement.items()}
    print("Serve placement:", json.dumps(placement))
    assert placement["logits"] == ["gpu"], placement  # the model stage, with its GPU
    others = [n for d, ns in placement.items() if d != "logits" for n in ns]
    assert others and "head" not in others, placement  # ingress (CPU stages fused in): a worker
    answer = requests.post(
        f"http://127.0.0.1:{nodes.head.ports['serve']}/digits",
        json=promoted.lock.example,
        timeout=60,
    )
    assert answer.status_code == 200 and answer.json()["label"] == 7, answer.text
    shown = subprocess.run(
        [GRAPHOPS, "--repo", str(repo), "status", "--env", "dev"],
        env=_env(nodes, registry),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "Placement" in shown.stdout and nodes.gpu[:12] in shown.stdout
