"""The main job's A/A experiment: two applications of one graph behind the experiment router.

Both arms run the same version, so it shows the machinery of `graphops experiment` without a
second version: the 90/10 split by a sticky request field, stickiness, the arm header and the
per-arm report. It runs on the main job's own local Ray (the one validation used).
"""

from __future__ import annotations

import time
from typing import Any

from graphops._views import console
from graphops.errors import GraphOpsError


def experiment_demo(pkg: Any, registry: Any) -> None:
    """Serve arms a and b of ``pkg``, route 90/10 by its first request field, check, clean up."""
    import requests
    from ray import serve

    from graphops._views import report_table
    from graphops.runtime import read_rows
    from graphops.runtime.online import deploy, free_port, undeploy
    from graphops.runtime.router import router_app
    from graphops.runtime.schema import RouteArm, RouterArgs, RouterConfig

    key = pkg.graph.request_fields[0]
    names = [f"{pkg.name}-a", f"{pkg.name}-b"]
    port = free_port()
    try:
        arms_up = [  # at most 0.75 CPU each: both fit beside each other on 2 CPUs
            deploy(pkg, registry, name=n, port=port, route=f"/_graphops/arm/{n}", cpu_budget=0.75)
            for n in names
        ]
        config = RouterConfig(
            experiment=f"{pkg.name}-demo",
            arms=(
                RouteArm(version="a", app=names[0], weight=90),
                RouteArm(version="b", app=names[1], weight=10),
            ),
            sticky_key=key,
        )
        route = f"/{pkg.name}-experiment"
        serve.run(
            router_app(RouterArgs(graph=pkg.name, route=route), config),
            name=f"{pkg.name}-router",
            route_prefix=route,
        )
        url = arms_up[0].url.split("/_graphops/")[0] + route
        console.print(f"router: POST {url} -> a ({names[0]}) 90%, b ({names[1]}) 10%")
        rows = [
            {f: r[f] for f in pkg.graph.request_fields} for r in read_rows(pkg.validation_dataset)
        ]
        arms: list[str] = []
        for chunk in (rows[i : i + 60] for i in range(0, len(rows), 60)):
            arms += _arms(requests.post(url, json=chunk, timeout=60), len(chunk))
        first = rows[:60]
        sticky = _arms(requests.post(url, json=first, timeout=60), len(first)) == arms[:60]
        console.print(
            f"{len(rows)} rows by {key}: a {arms.count('a')}, b {arms.count('b')}; "
            f"the same 60 rows again went to the same arms: {'yes' if sticky else 'NO'}"
        )
        if not sticky:
            raise GraphOpsError(
                "The router sent the same rows to other arms the second time.",
                fix="Report a bug: assignment by sticky key must be deterministic.",
                graph=pkg.name,
            )
        time.sleep(1.5)  # router replicas flush their counters every second
        console.print(report_table(requests.get(f"{url}/experiment", timeout=30).json()))
        console.print(
            "In an environment this is `graphops experiment start <graph> --env dev --weight 10` "
            "with a second validated version (docs/experiments.md)."
        )
    finally:
        for name in (f"{pkg.name}-router", *names):
            undeploy(name)


def _arms(answer: Any, rows: int) -> list[str]:
    """The arm of each row of a list answer (the header names one, or one per row)."""
    if answer.status_code != 200:
        raise GraphOpsError(f"The router answered {answer.status_code}: {answer.text[:300]}")
    got = answer.headers["x-graphops-arm"].split(",")
    return got * rows if len(got) == 1 else got
