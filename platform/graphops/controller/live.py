"""Live figures per graph and arm (`graphops status --live`), read from the cluster itself.

No Prometheus is needed: every graph's ingress keeps its own totals and serves them at
``GET /<graph>/stats`` (to the cluster's token, sent as to the dashboard; one replica per
answer, so the reader asks until it has seen every RUNNING ingress replica Serve lists), and a
graph whose route is split (an experiment, a canary) is read at ``GET /<graph>/split`` (its
`SplitReport`: per arm, totals merged across the stable ingress's replicas). Each source is read
twice, ``seconds`` apart; the figures are what happened in between: requests per second, error
rate, p50 and p99 (ms, histogram buckets 15% apart).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import requests
from pydantic import BaseModel, Field

from graphops.controller.applications import version_of
from graphops.controller.cluster import Cluster, serve_url
from graphops.environments import load_environment, load_release
from graphops.errors import GraphOpsError
from graphops.runtime.figures import Raw, delta, merge, rates
from graphops.runtime.schema import INGRESS
from graphops.runtime.split import SPLIT_ROUTE, SplitReport

STATS_TRIES = 24
"""GETs of ``/<graph>/stats`` spent finding every ingress replica (the proxy picks one each)."""


class LiveFigures(BaseModel):
    """One arm of a split (or the one version serving a route) over the reading's window."""

    env: str
    graph: str
    version: str
    role: Annotated[
        str,
        Field(
            description="serving (alone), or the stable, an arm or the mirror of a split "
            "(experiment or canary)."
        ),
    ]
    weight: Annotated[float, Field(description="Percent of the route's requests it gets.")]
    app: str
    seconds: Annotated[float, Field(description="Length of the window read.")]
    requests: int = 0
    errors: int = 0
    rps: float = 0.0
    error_rate: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    replicas: Annotated[
        str, Field(description="Ingress replicas read / listed (route not split), e.g. '2/2'.")
    ] = ""
    problem: Annotated[str, Field(description="Why it could not be read (empty when read).")] = ""


def _get(url: str, timeout_s: float, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    answer = requests.get(url, timeout=timeout_s, headers=dict(headers or {}))
    if answer.status_code == 401:  # the route's own message says what the token is and the fix
        raise requests.HTTPError(f"{url} answered 401: {answer.text.strip()[:300]}")
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def ingress_totals(
    url: str, expected: int, timeout_s: float = 5.0, headers: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Replica id -> its ``/stats`` reading, asking until ``expected`` replicas were seen.

    ``/stats`` needs the cluster's token: ``headers`` carry it (``Authorization: Bearer``).
    """
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(STATS_TRIES):
        reading = _get(url, timeout_s, headers)
        seen[reading["replica"]] = reading
        if len(seen) >= expected:
            break
    return seen


def _window(before: Raw | None, after: Raw, seconds: float) -> dict[str, Any]:
    return rates(delta(after, before), seconds)


def split(app: Mapping[str, Any]) -> bool:
    """Whether an application's config splits its route (a split in its ingress's user_config)."""
    return any(
        d.get("name") == INGRESS and d.get("user_config") for d in app.get("deployments") or []
    )


def read_graph(
    env_name: str,
    graph: str,
    base_url: str,
    apps: dict[str, Any],
    *,
    seconds: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    headers: Mapping[str, str] | None = None,
) -> list[LiveFigures]:
    """The live figures of one graph: per arm of its split, or of the one serving version.

    ``headers`` carry the cluster's token, which ``/stats`` needs (`Cluster.headers`).
    """
    common: dict[str, Any] = {"env": env_name, "graph": graph}
    serving = [
        (name, app)
        for name, app in apps.items()
        if ((app.get("deployed_app_config") or {}).get("args") or {}).get("graph") == graph
        and app.get("route_prefix") == f"/{graph}"
    ]
    if serving and split(serving[0][1].get("deployed_app_config") or {}):
        url = f"{base_url}/{graph}{SPLIT_ROUTE}"
        old, t0 = SplitReport.model_validate(_get(url, 10.0)), time.monotonic()
        sleep(seconds)
        new, t1 = SplitReport.model_validate(_get(url, 10.0)), time.monotonic()
        out = []
        for arm in new.arms:
            was = old.arm(arm.app) if old.name == new.name else None
            out.append(
                LiveFigures(
                    **common,
                    version=arm.version,
                    role=arm.role,
                    weight=arm.weight,
                    app=arm.app,
                    seconds=t1 - t0,
                    **_window(was.raw if was else None, arm.raw, t1 - t0),
                )
            )
        return out
    if not serving:
        return [
            LiveFigures(
                **common,
                version="-",
                role="serving",
                weight=100,
                app="-",
                seconds=0,
                problem=f"nothing serves /{graph}",
            )
        ]
    name, details = serving[0]
    ingress = (details.get("deployments") or {}).get(INGRESS) or {}
    expected = len([r for r in ingress.get("replicas") or [] if r.get("state") == "RUNNING"])
    url = f"{base_url}/{graph}/stats"
    first, t0 = ingress_totals(url, max(expected, 1), headers=headers), time.monotonic()
    sleep(seconds)
    second, t1 = ingress_totals(url, max(expected, 1), headers=headers), time.monotonic()
    both = sorted(set(first) & set(second))
    before = _sum(first[r]["raw"] for r in both)
    after = _sum(second[r]["raw"] for r in both)
    version = version_of(graph, name)  # the lock's version (the application is named by it)
    return [
        LiveFigures(
            **common,
            version=version,
            role="serving",
            weight=100,
            app=name,
            seconds=t1 - t0,
            replicas=f"{len(both)}/{expected}",
            **_window(before, after, t1 - t0),
        )
    ]


def _sum(parts: Any) -> Raw:
    total: Raw = {}
    for part in parts:
        total = merge(total, part)
    return total


def live(
    repo: Path, env: str, *, graph: str | None = None, seconds: float = 2.0
) -> list[LiveFigures]:
    """Live figures of every graph ``env`` releases (or of ``graph``), per arm.

    A graph that cannot be read gets one row whose ``problem`` says why.

    Raises:
        GraphOpsError: The cluster cannot be read at all (unreachable, token).
    """
    config = load_environment(repo, env)
    release = load_release(repo, env)
    cluster = Cluster(config, timeout_s=10)
    apps = {  # an application being deleted (a retired arm) answers nothing any more
        name: app for name, app in cluster.applications().items() if app.get("status") != "DELETING"
    }
    base = serve_url(config)
    out: list[LiveFigures] = []
    for name in sorted(release.graphs) if graph is None else [graph]:
        try:
            out += read_graph(env, name, base, apps, seconds=seconds, headers=cluster.headers)
        except (requests.RequestException, GraphOpsError, KeyError, ValueError) as exc:
            out.append(
                LiveFigures(
                    env=env,
                    graph=name,
                    version="-",
                    role="-",
                    weight=0,
                    app="-",
                    seconds=0,
                    problem=f"{type(exc).__name__}: {exc}"[:300],
                )
            )
    return out


__all__ = ["LiveFigures", "ingress_totals", "live", "read_graph"]
