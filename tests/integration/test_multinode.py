"""Heterogeneous multi-node, for real: a head, a CPU worker node and a worker node advertising a
logical GPU (`ray start --num-gpus 1`, no hardware), all on 127.0.0.1 with token auth. digits is
validated on it (Ray Data) and applied to an environment with `gpus: true` (Ray Serve): the model
stage lands on the GPU node, CPU work runs on the worker nodes (the CPU node first; Ray spills CPU
tasks onto a GPU node's free CPUs, which the test records), and no GPU request is dropped.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import git
import pytest
import requests

from graphops.controller.apply import apply
from graphops.controller.promote import promote
from graphops.controller.status import status
from graphops.demo.nodes import LocalCluster, alive_nodes, ray_state, start_local_cluster
from graphops.registry import Registry
from tests.integration._repos import GRAPHOPS, multinode_env, multinode_repo, validate_on

pytestmark = pytest.mark.usefixtures("champion")


@pytest.fixture(scope="module")
def nodes(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three Ray nodes on this machine (graphops.demo.nodes): head, cpu and gpu."""
    cluster = start_local_cluster(
        "ray-mn", tmp_path_factory.mktemp("ray"), tracking_uri=registry.tracking_uri
    )
    try:
        assert len(alive_nodes(cluster.head)) == 3
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def repo(repo_copy: Path, nodes: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """graphs/ and environments/, dev on the three-node cluster with `gpus: true`."""
    return multinode_repo(repo_copy, tmp_path_factory.mktemp("multinode") / "repo", nodes)


def test_ray_data_runs_model_actors_on_the_gpu_node(
    repo: Path, nodes: LocalCluster, registry: Registry
) -> None:
    out = validate_on(repo, nodes, registry.tracking_uri)
    assert "no GPU" not in out  # no GPU request dropped
    actors = [a for a in ray_state(nodes.head, "actors") if "MapWorker" in a.get("class_name", "")]
    tasks = [t for t in ray_state(nodes.head, "tasks") if t.get("node_id")]
    placed_actors = sorted({(a["class_name"], nodes.name(a["node_id"])) for a in actors})
    placed_tasks = sorted({(t["name"], nodes.name(t["node_id"])) for t in tasks})
    print("Ray Data actors:", json.dumps(placed_actors), "tasks:", json.dumps(placed_tasks))
    # The model stage's actor pool asks for a GPU: only the GPU node can hold it.
    assert actors and all(a["node_id"] == nodes.ids["gpu"] for a in actors), placed_actors
    # CPU stages are tasks asking for CPUs only: Ray prefers nodes without GPUs for them (and
    # the CPU node runs them) but spills onto the GPU node's free CPUs when the CPU node is full,
    # measured here; never onto the head, which declares no CPUs.
    cpu_work = [t for t in tasks if "_StageTask" in t["name"] or "Read" in t["name"]]
    assert cpu_work and any(t["node_id"] == nodes.ids["cpu"] for t in cpu_work), placed_tasks
    assert all(t["node_id"] != nodes.ids["head"] for t in cpu_work), placed_tasks


def test_serve_places_the_model_stage_on_the_gpu_node(
    repo: Path, nodes: LocalCluster, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPHOPS_MN_TOKEN", nodes.token)
    promoted = promote(repo, "digits", "dev", registry)
    with git.Repo(repo) as r:
        r.git.merge(promoted.branch)
    result = apply(repo, "dev", timeout_s=300, tracking_uri=registry.tracking_uri)
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
        env=multinode_env(nodes, registry.tracking_uri),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "Placement" in shown.stdout and nodes.ids["gpu"][:12] in shown.stdout
