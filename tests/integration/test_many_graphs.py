"""Many graphs on one cluster: one graph's new version restarts none of its neighbours.

A generated monorepo (`benchmarks._monorepo`: graphs of three shapes, scikit-learn models in
its own MLflow store, every environment pinned) runs on a fresh local cluster; one graph's code
changes, is promoted to dev and applied (blue/green). Serve's replica ids of every other
graph's application are the same before and after (`benchmarks._running`, the scale
benchmark's cluster part, with 30 graphs there).
"""

from __future__ import annotations

from pathlib import Path

import requests

from benchmarks._monorepo import generate
from benchmarks._running import apply_among_running, point_dev_at
from graphops.environments import load_release
from tests.integration._clusters import fresh_cluster, serve_url

GRAPHS = 5


def test_one_graphs_rollout_restarts_none_of_the_others(tmp_path: Path) -> None:
    m = generate(tmp_path / "monorepo", GRAPHS)
    with fresh_cluster("ray-many", tmp_path / "ray", m.tracking_uri, num_cpus=4) as ray:
        point_dev_at(m, ray.url, ray.ports["serve"])
        result = apply_among_running(m, ray.token or "", timeout_s=300)
        entry = load_release(m.root, "dev").graphs[m.one]
        answer = requests.post(f"{serve_url(ray)}/{m.one}", json=entry.lock.example, timeout=30)
        health = requests.get(f"{serve_url(ray)}/{m.one}/health", timeout=30).json()
    print("apply among running graphs:", result)
    assert result["graphs"] == GRAPHS and result["others"] == GRAPHS - 1
    assert result["replicas"] >= GRAPHS  # every graph ran before the change
    [started], [retired] = result["started"], result["retired"]
    assert started.startswith(f"{m.one}-1.0.1-") and retired.startswith(f"{m.one}-1.0.0-")
    assert result["new_app_running"]
    assert result["restarted"] == []  # not one replica of the other graphs restarted
    assert answer.status_code == 200, answer.text
    assert health["version"] == "1.0.1"
