"""Apply one changed graph while many run on one local cluster: what it restarts and costs.

The scale benchmark's cluster part (and `tests/integration/test_many_graphs.py`'s, with fewer
graphs): a generated monorepo's dev points at a running local cluster (token auth, loopback),
`apply` starts every graph, one graph gets a new version (its changed code merged and promoted to
dev as a release owner would), and `apply` runs again. Serve's replica ids of every other graph's
applications, read before and after through Serve's REST API, must be the same: a graph's
rollout restarts none of its neighbours.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import git
import yaml

from benchmarks._monorepo import Monorepo
from graphops.demo.multinode import with_token


def point_dev_at(m: Monorepo, dashboard: str, serve_port: int) -> None:
    """Dev's cluster becomes the one at ``dashboard`` (Serve on ``serve_port``): committed."""
    from graphops.controller.render import render

    path = m.root / "environments/dev/environment.yaml"
    data = yaml.safe_load(path.read_text())
    data["cluster"] |= {"dashboard": dashboard, "serve_url": f"http://127.0.0.1:{serve_port}"}
    data["http_port"] = serve_port
    path.write_text(yaml.safe_dump(data))
    render(m.root, "dev").write()
    with git.Repo(m.root) as r:
        r.git.add(A=True)
        r.index.commit("dev: the local cluster")
        r.remotes.origin.push("main:main")


def replica_ids(m: Monorepo) -> dict[str, list[str]]:
    """Application -> the sorted ids of its RUNNING replicas (all deployments)."""
    from graphops.controller.cluster import Cluster
    from graphops.environments import load_environment

    apps = Cluster(load_environment(m.root, "dev")).applications()
    return {
        name: sorted(
            str(r["replica_id"])
            for d in (app.get("deployments") or {}).values()
            for r in d.get("replicas") or []
            if r.get("state") == "RUNNING"
        )
        for name, app in apps.items()
    }


def change_one(m: Monorepo) -> str:
    """Merge the changed graph's branch and promote it to dev (merged): its new application."""
    from graphops.controller.promote import promote
    from graphops.controller.render import app_name
    from graphops.registry import Registry

    with git.Repo(m.root) as r:
        r.git.merge("--no-edit", "change")
    promoted = promote(m.root, m.one, "dev", Registry(m.root / ".graphops", m.tracking_uri))
    with git.Repo(m.root) as r:
        r.git.merge("--no-edit", promoted.branch)
    return app_name(m.one, promoted.lock)


def apply_among_running(m: Monorepo, cluster_token: str, timeout_s: float = 600) -> dict[str, Any]:
    """Apply every graph, then one changed graph; what the second apply restarted and cost.

    Returns:
        ``graphs`` running, ``replicas`` before the change, ``first_apply_s`` (all graphs),
        ``apply_one_s`` (the changed graph's blue/green), ``started``/``retired``,
        ``others`` (applications of the other graphs) and ``restarted`` (those whose replica ids
        changed: the target is none).
    """
    from graphops.controller.apply import apply

    with with_token("RAY_AUTH_TOKEN", cluster_token):
        start = time.perf_counter()
        apply(m.root, "dev", timeout_s=timeout_s, tracking_uri=m.tracking_uri)
        first_s = time.perf_counter() - start
        before = replica_ids(m)
        new_app = change_one(m)
        start = time.perf_counter()
        result = apply(m.root, "dev", timeout_s=timeout_s, tracking_uri=m.tracking_uri)
        one_s = time.perf_counter() - start
        after = replica_ids(m)
    old_app = [n for n in before if n.startswith(f"{m.one}-")]
    others = [n for n in before if n not in old_app]
    restarted = [n for n in others if after.get(n) != before[n]]
    return {
        "graphs": len(m.graphs),
        "replicas": sum(len(ids) for ids in before.values()),
        "first_apply_s": round(first_s, 2),
        "apply_one_s": round(one_s, 2),
        "started": result.started,
        "retired": result.retired,
        "new_app_running": new_app in after and bool(after[new_app]),
        "others": len(others),
        "restarted": restarted,
    }


def on_local_cluster(work: Path, n: int, num_cpus: float = 8) -> dict[str, Any]:
    """`apply_among_running` for ``n`` generated graphs on a cluster of its own (stopped after).

    The cluster declares ``num_cpus`` logical CPUs (more than the machine's: the graphs idle).
    """
    from benchmarks._monorepo import generate
    from graphops.demo import services

    m = generate(work / f"n{n}", n)
    tracking = m.tracking_uri
    cluster = services.start_ray(
        "ray-scale",
        work / "ray",
        dashboard_port=None,
        serve_port=None,
        tracking_uri=tracking,
        num_cpus=num_cpus,
        taken=set(),
    )
    try:
        services.wait_ready(cluster)
        point_dev_at(m, cluster.url, cluster.ports["serve"])
        return apply_among_running(m, cluster.token or "")
    finally:
        services.stop(cluster)
