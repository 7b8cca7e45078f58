"""Heterogeneous multi-node, for real: a head, a CPU worker node and a worker node advertising a
logical GPU (`ray start --num-gpus 1`, no hardware), all on 127.0.0.1 with token auth. The CPU
node is labelled ``graphops.io/node-kind=cpu``, the GPU node is not (`graphops.demo.nodes`).

Several graphs (digits, whose model stage asks for a GPU, and feed_ranking, all CPU) are validated
on it (Ray Data) and applied to an environment with `gpus: true` (Ray Serve). The rule, checked
through `graphops status`'s placement table and Ray's state API: GPU stages on the GPU node, and
0 CPU-only replicas and 0 Ray Data CPU tasks or actors on the GPU node (the label selector is a
hard constraint: Ray no longer spills CPU work onto the GPU node's free CPUs). A cluster where no
node carries the label is refused by `apply` with the stage, the label and the fix.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest
import requests

from graphops.controller.apply import apply
from graphops.controller.promote import promote
from graphops.controller.status import diff, rollout_peak, status
from graphops.demo.nodes import LocalCluster, alive_nodes, ray_state, start_local_cluster
from graphops.errors import ApplyError
from graphops.graph import GraphPackage, load_graph
from graphops.registry import Registry, ResolvedModel
from tests.integration._repos import GRAPHOPS, multinode_env, multinode_repo, validate_on

pytestmark = pytest.mark.usefixtures("champion", "feed_champion")
GRAPHS = ("digits", "feed_ranking")


@pytest.fixture(scope="module")
def feed_champion(repo_copy: Path, registry: Registry) -> ResolvedModel:
    """feed_ranking's ranker, trained by its own entry point."""
    feed: GraphPackage = load_graph(repo_copy, "feed_ranking")
    trainer = feed.trainer()
    assert trainer is not None
    return trainer(registry)


@pytest.fixture(scope="module")
def nodes(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three Ray nodes on this machine (graphops.demo.nodes): head, cpu (labelled) and gpu."""
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


def _gpus(record: dict[str, Any]) -> float:
    return float((record.get("required_resources") or {}).get("GPU", 0))


def _ours(actor: dict[str, Any]) -> bool:
    """An actor of the offline run: a Ray Data pool's worker or the run's Monitor."""
    return any(k in actor.get("class_name", "") for k in ("MapWorker", "Monitor"))


def test_the_nodes_are_labelled_as_the_rule_needs(nodes: LocalCluster) -> None:
    labels = {nodes.name(n["node_id"]): n.get("labels") or {} for n in alive_nodes(nodes.head)}
    assert labels["cpu"].get("graphops.io/node-kind") == "cpu", labels
    assert "graphops.io/node-kind" not in labels["gpu"], labels
    assert "graphops.io/node-kind" not in labels["head"], labels


def test_ray_data_keeps_cpu_work_off_the_gpu_node(
    repo: Path, nodes: LocalCluster, registry: Registry
) -> None:
    for graph in GRAPHS:
        out = validate_on(repo, nodes, registry.tracking_uri, graph)
        assert "no GPU" not in out  # no GPU request dropped
    actors = [a for a in ray_state(nodes.head, "actors") if a.get("node_id")]
    tasks = [t for t in ray_state(nodes.head, "tasks") if t.get("node_id")]
    placed_actors = sorted({(a["class_name"], _gpus(a), nodes.name(a["node_id"])) for a in actors})
    placed_tasks = sorted({(t["name"], nodes.name(t["node_id"])) for t in tasks})
    print("Ray Data actors:", json.dumps(placed_actors), "tasks:", json.dumps(placed_tasks))
    workers = [a for a in actors if "MapWorker" in a.get("class_name", "")]
    gpu_pool = [a for a in workers if _gpus(a)]
    cpu_pool = [a for a in workers if not _gpus(a)]
    # digits' model stage asks for a GPU: only the GPU node holds its actors
    assert gpu_pool and all(a["node_id"] == nodes.ids["gpu"] for a in gpu_pool), placed_actors
    # feed_ranking's ranker asks for none: its actors are CPU work, on the CPU node only
    assert cpu_pool and all(a["node_id"] == nodes.ids["cpu"] for a in cpu_pool), placed_actors
    # every task (read, CPU stages, write: none asks for a GPU) and every other actor (the
    # run's Monitor): 0 on the GPU node
    cpu_tasks = [t for t in tasks if t.get("type") == "NORMAL_TASK"]
    assert any("_StageTask" in t["name"] or "Read" in t["name"] for t in cpu_tasks), placed_tasks
    misplaced = [
        name
        for name, node in [(t["name"], t["node_id"]) for t in cpu_tasks]
        + [(a["class_name"], a["node_id"]) for a in actors if _ours(a) and not _gpus(a)]
        if node == nodes.ids["gpu"]
    ]
    assert misplaced == [], placed_tasks + placed_actors


def test_serve_keeps_cpu_only_replicas_off_the_gpu_node(
    repo: Path, nodes: LocalCluster, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPHOPS_MN_TOKEN", nodes.token)
    examples = {}
    for graph in GRAPHS:
        promoted = promote(repo, graph, "dev", registry)
        with git.Repo(repo) as r:
            r.git.merge(promoted.branch)
        examples[graph] = promoted.lock.example
    changes = diff(repo, "dev")
    peak = rollout_peak(repo, "dev", changes)
    # CPU-only replicas may use only the labelled CPU node's 2 CPUs: diff checks that room too.
    assert peak.cpu_node_free is not None and 0 < peak.cpu_node_free <= 2
    assert peak.cpu_only_extra == pytest.approx(sum(c.cpus for c in changes if c.cpu_only))
    assert 0 < peak.cpu_only_extra <= peak.extra.cpus and peak.extra.gpus >= 1  # digits' logits
    assert peak.short == []
    result = apply(repo, "dev", timeout_s=300, tracking_uri=registry.tracking_uri)
    assert len(result.started) == 2
    rows = {r.graph: r for r in status(repo, "dev")}
    assert set(rows) == set(GRAPHS) and all(r.live == "RUNNING" for r in rows.values())
    placed = [p for r in rows.values() for p in r.replicas]
    table = sorted((p.deployment, p.cpu_only, nodes.name(p.node_id), p.node_kind) for p in placed)
    print("Serve placement:", json.dumps(table))
    gpu_replicas = [p for p in placed if not p.cpu_only]
    cpu_replicas = [p for p in placed if p.cpu_only]
    # digits' logits (its GPU) on the GPU node; both ingresses and feed_ranking's model: CPU work
    assert [p.deployment.split("/")[1] for p in gpu_replicas] == ["logits"], table
    assert all(p.node_id == nodes.ids["gpu"] and p.node_kind == "gpu" for p in gpu_replicas)
    assert len(cpu_replicas) >= 2, table
    assert all(p.node_id == nodes.ids["cpu"] and p.node_kind == "cpu" for p in cpu_replicas), table
    assert not any(p.misplaced for p in placed) and not any(
        r.placement_problem for r in rows.values()
    )
    for graph, example in examples.items():
        answer = requests.post(
            f"http://127.0.0.1:{nodes.head.ports['serve']}/{graph}", json=example, timeout=60
        )
        assert answer.status_code == 200, answer.text
    shown = subprocess.run(
        [GRAPHOPS, "--repo", str(repo), "status", "--env", "dev"],
        env=multinode_env(nodes, registry.tracking_uri),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "Placement" in shown.stdout and nodes.ids["gpu"][:12] in shown.stdout
    assert "CPU-only on a GPU node" not in shown.stdout


def test_no_labelled_node_is_refused_naming_stage_label_and_fix(
    repo: Path, nodes: LocalCluster, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CPU node gone: apply refuses before any change, status says why (exit 1)."""
    monkeypatch.setenv("GRAPHOPS_MN_TOKEN", nodes.token)
    nodes.stop_worker("cpu")
    with pytest.raises(ApplyError) as refused:
        apply(repo, "dev", timeout_s=60, tracking_uri=registry.tracking_uri)
    said = str(refused.value)
    assert "graphops.io/node-kind=cpu" in said and "/ingress" in said, said
    assert "ray start --labels graphops.io/node-kind=cpu" in said, said
    shown = subprocess.run(
        [GRAPHOPS, "--repo", str(repo), "status", "--env", "dev"],
        env=multinode_env(nodes, registry.tracking_uri),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert "No live node" in shown.stdout and "ray start --labels" in shown.stdout, shown.stdout
