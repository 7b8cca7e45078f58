"""Node loss under load: logical-GPU worker nodes stopped (and one replaced) while a route serves.

A head (no CPUs), a CPU worker node and two worker nodes advertising a logical GPU each
(`graphops.demo.nodes`, all on 127.0.0.1 with token auth); digits applied through graphops to
an environment with `gpus: true` and `policy.min_replicas: 2`, so its model stage (`logits`) runs
one replica on each GPU node. Load from a separate process on the stable route. First one GPU
node's process group is stopped by its pid (the other replica serves); then the last GPU node is
stopped, a new one joins 5 s later, and Serve must put the model stage on it without a person.
The figures (failed/total, seconds until requests succeed steadily, placement before and after)
go to benchmarks/results/reliability.json; timings are recorded, never asserted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import git
import pytest

from graphops.controller.apply import apply
from graphops.controller.promote import promote
from graphops.controller.status import status
from graphops.demo.nodes import LocalCluster, start_local_cluster
from graphops.registry import Registry
from tests.integration._repos import multinode_repo, validate_on
from tests.reliability._load import Load, LoadResult
from tests.reliability.conftest import Rows

pytestmark = pytest.mark.usefixtures("champion")

RPS = 5
THREADS = 256
"""Requests in flight at most: enough to keep sending on schedule while requests wait 30 s."""
RECOVERY_BOUND_S = 150.0
"""Longest a lost GPU node may take to be replaced and serve again (node start + replica start)."""
STEADY_S = 5.0
"""Seconds of load kept up after Serve reports the model stage back, to see it answer steadily."""


@dataclass
class Served:
    repo: Path
    url: str
    body: bytes


@pytest.fixture(scope="module")
def cluster(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """head, cpu (2 CPUs), gpu-a and gpu-b (1 CPU, 1 logical GPU each); stopped by pid after."""
    nodes = start_local_cluster(
        "ray-loss",
        tmp_path_factory.mktemp("ray"),
        tracking_uri=registry.tracking_uri,
        workers=(("cpu", 2, 0), ("gpu-a", 1, 1), ("gpu-b", 1, 1)),
    )
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture(scope="module")
def served(
    repo_copy: Path,
    cluster: LocalCluster,
    registry: Registry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """digits promoted to dev (`gpus: true`, `policy.min_replicas: 2`) and applied by graphops;
    the token stays in GRAPHOPS_MN_TOKEN for the module's test."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAPHOPS_MN_TOKEN", cluster.token)
        repo = multinode_repo(
            repo_copy, tmp_path_factory.mktemp("loss") / "repo", cluster, min_replicas=2
        )
        validate_on(repo, cluster, registry.tracking_uri)
        promoted = promote(repo, "digits", "dev", registry)
        with git.Repo(repo) as r:
            r.git.merge(promoted.branch)
        assert apply(repo, "dev", timeout_s=300, tracking_uri=registry.tracking_uri).started
        yield Served(
            repo,
            f"http://127.0.0.1:{cluster.head.ports['serve']}/digits",
            json.dumps(promoted.lock.example).encode(),
        )


def placement(served: Served, cluster: LocalCluster) -> dict[str, list[str]]:
    """Deployment -> node names of its running replicas, from `graphops status`'s placement."""
    [row] = status(served.repo, "dev")
    return {k.split("/", 1)[1]: [cluster.name(n) for n in v] for k, v in row.placement.items()}


def wait_for(served: Served, cluster: LocalCluster, logits: list[str], since: float) -> float:
    """Wait until the model stage runs on exactly the nodes ``logits``; seconds since ``since``."""
    while True:
        where = placement(served, cluster)
        if sorted(where.get("logits", [])) == sorted(logits):
            return time.time() - since
        assert time.time() - since < RECOVERY_BOUND_S, f"not recovered: {where}"
        time.sleep(1)


def figures(result: LoadResult, stopped_at: float) -> dict[str, object]:
    """What the load saw around the stop (seconds relative to the stop)."""
    stop = stopped_at - result.started_at
    failed_sent = [sent for sent, _, what in result.timeline if what != "200"]
    last_failure = max([stop, *failed_sent])
    # Healthy again: the first answer of a request sent after the stop and after the last
    # request that failed (every request sent since then succeeded).
    healthy = min(
        (done for sent, done, what in result.timeline if what == "200" and sent > last_failure),
        default=None,
    )
    return {
        "failed_before_stop": sum(
            1 for _, done, what in result.timeline if done < stop and what != "200"
        ),
        "healthy_s": None if healthy is None else round(healthy - stop, 1),
        "steady_s": 0.0 if healthy is None else round(result.timeline[-1][0] - healthy, 1),
        "ok_after_healthy": sum(1 for sent, *_ in result.timeline if healthy and sent >= healthy),
        "statuses": result.statuses,
        "failures_s_after_stop": [round(t - stop, 1) for t in failed_sent[:20]],
        "samples": result.samples,
        "p50_ms": round(result.percentile(0.5), 1),
        "p99_ms": round(result.percentile(0.99), 1),
    }


def test_gpu_nodes_lost_under_load(served: Served, cluster: LocalCluster, rows: Rows) -> None:
    # 1. One of two GPU nodes is lost: the other model replica serves.
    wait_for(served, cluster, ["gpu-a", "gpu-b"], time.time())
    before = placement(served, cluster)
    load = Load(served.url, served.body, rps=RPS, seconds=60, threads=THREADS).start()
    time.sleep(6)  # the load process is up and answered
    stopped_at = time.time()
    cluster.stop_worker("gpu-a")
    time.sleep(10)  # one GPU node serves alone
    result = load.finish()
    after = placement(served, cluster)
    seen = figures(result, stopped_at)
    rows.add(
        f"one of two GPU worker nodes stopped, policy.min_replicas 2 (a model replica on each), "
        f"{RPS} req/s",
        failed=result.failed,
        total=result.total,
        ingress="proxy",  # a local multi-node cluster serves through Serve's proxy
        recovery_s=0.0,
        placement_before=before,
        placement_after=after,
        **seen,
    )
    print("one of two GPU nodes lost:", json.dumps({"failed": result.failed, **seen}))
    assert seen["failed_before_stop"] == 0, seen
    assert after["logits"] == ["gpu-b"], after  # the survivor serves; Serve waits for a GPU
    # A model replica's loss is retried by the ingress on the other replica; only requests in
    # flight on an ingress replica (or the HTTP proxy) on the lost node can fail (500).
    assert result.failed <= 3, seen

    # 2. The last GPU node is lost; a new one starts 5 s later: Serve places the stage there.
    before = after
    load = Load(served.url, served.body, rps=RPS, seconds=110, threads=THREADS).start()
    time.sleep(6)
    stopped_at = time.time()
    cluster.stop_worker("gpu-b")
    time.sleep(5)  # no GPU node at all for a while, as after a crash before a replacement
    cluster.add_worker("gpu-c", cpus=1, gpus=1)
    joined_s = time.time() - stopped_at
    serve_s = wait_for(served, cluster, ["gpu-c"], stopped_at)
    time.sleep(STEADY_S)
    result = load.finish()
    after = placement(served, cluster)
    seen = figures(result, stopped_at)
    rows.add(
        f"the last GPU worker node stopped, a new one started 5 s later, {RPS} req/s",
        failed=result.failed,
        total=result.total,
        ingress="proxy",  # a local multi-node cluster serves through Serve's proxy
        recovery_s=seen["healthy_s"],
        node_joined_s=round(joined_s, 1),
        serve_placed_s=round(serve_s, 1),
        placement_before=before,
        placement_after=after,
        **seen,
    )
    print(
        "last GPU node lost:", json.dumps({"failed": result.failed, "total": result.total, **seen})
    )
    assert seen["failed_before_stop"] == 0, seen
    assert seen["healthy_s"] is not None and seen["ok_after_healthy"] >= RPS * 2, seen
    assert after["logits"] == ["gpu-c"], after  # back on a GPU node, the new one
    assert "head" not in [n for nodes in after.values() for n in nodes], after
