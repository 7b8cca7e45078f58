"""The main job's A/A experiment: one graph's route split 90/10 by its own ingress.

Both arms run the same version, so it shows the machinery of `graphops experiment` without a
second version: the 90/10 split by a sticky request field in the ingress of arm a (arm b's
share answered by b's stages with no hop: same code), stickiness, the arm header and the
per-arm report at ``GET <route>/split``. It runs on the main job's own local Ray (the one
validation used).
"""

from __future__ import annotations

import time
from typing import Any

from graphops._views import console
from graphops.errors import GraphOpsError


def experiment_demo(pkg: Any, registry: Any) -> None:
    """Serve arms a and b of ``pkg``, a splitting 90/10 by its first request field; check; clean up."""
    import requests

    from graphops._net import free_port
    from graphops._views import report_table
    from graphops.runtime import read_rows
    from graphops.runtime.online import deploy, undeploy
    from graphops.runtime.split import SPLIT_ROUTE, SplitArm, SplitReport, TrafficSplit

    key = pkg.graph.request_fields[0]
    names = [f"{pkg.name}-a", f"{pkg.name}-b"]
    port = free_port()
    route = f"/{pkg.name}-experiment"
    split = TrafficSplit(
        name=f"{pkg.name}-demo",
        purpose="experiment",
        own_version="a",
        arms=(SplitArm(app=names[1], version="b", content_hash=pkg.content_hash, weight=10),),
        sticky_key=key,
    )
    try:
        # At most 0.75 CPU each: both fit beside each other on 2 CPUs. b first: a's split
        # makes handles to b's stages when it starts.
        deploy(
            pkg,
            registry,
            name=names[1],
            port=port,
            route=f"/_graphops/arm/{names[1]}",
            cpu_budget=0.75,
        )
        stable = deploy(
            pkg, registry, name=names[0], port=port, route=route, cpu_budget=0.75, split=split
        )
        url = stable.url
        console.print(f"split in a's ingress: POST {url} -> a ({names[0]}) 90%, b ({names[1]}) 10%")
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
                "The split sent the same rows to other arms the second time.",
                fix="Report a bug: assignment by sticky key must be deterministic.",
                graph=pkg.name,
            )
        time.sleep(1.5)  # ingress replicas flush their counters every second
        report = requests.get(f"{url}{SPLIT_ROUTE}", timeout=30)
        console.print(report_table(SplitReport.model_validate_json(report.content)))
        console.print(
            "In an environment this is `graphops experiment start <graph> --env dev --weight 10` "
            "with a second validated version (docs/experiments.md)."
        )
    finally:
        for name in names:
            undeploy(name)


def _arms(answer: Any, rows: int) -> list[str]:
    """The arm of each row of a list answer (the header names one, or one per row)."""
    if answer.status_code != 200:
        raise GraphOpsError(f"The split answered {answer.status_code}: {answer.text[:300]}")
    got = answer.headers["x-graphops-arm"].split(",")
    return got * rows if len(got) == 1 else got
