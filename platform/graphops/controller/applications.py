"""Serve applications as configs: their routes, what git decides of them, smoke tests, splits.

The shared vocabulary of `apply` and the rollout strategies (`graphops.controller.rollout`),
below both: where a candidate and a parked version are routed, which parts of a live config
are compared with git, the smoke request a new version must answer, and the `TrafficSplit` set
in (or read from) a stable application's ingress. Configs are Serve's JSON (``dict[str, Any]``).
"""

from __future__ import annotations

import json
from typing import Any

import requests

from graphops.controller.cluster import Cluster
from graphops.runtime.schema import INGRESS
from graphops.runtime.split import TrafficSplit

AppConfig = dict[str, Any]
"""One application of a Serve config, as Serve's REST API reads and writes it."""

CANDIDATE = "/_graphops/candidate/"
"""Route prefix of a new version while it is started beside the running one."""
_COMPARED = ("name", "route_prefix", "import_path", "args", "runtime_env", "deployments")


def comparable(app: AppConfig) -> AppConfig:
    """The parts of an application config that git decides (Serve adds defaults to the rest)."""
    return {k: app[k] for k in _COMPARED if app.get(k) not in (None, {}, [])}


def graph_of(app: AppConfig) -> str | None:
    """The graph an application serves, when graphops made it."""
    args = app.get("args") or {}
    graph = args.get("graph") if str(app.get("import_path", "")).startswith("graphops.") else None
    return str(graph) if graph is not None else None


def version_of(graph: str, app: str) -> str:
    """The version in an application name ``<graph>-<version>-<lock id>``."""
    return app[len(graph) + 1 : -9]


def live_applications(cluster: Cluster) -> dict[str, AppConfig]:
    """Live application configs by name; one being deleted (a failed candidate) is not state."""
    return {
        name: app["deployed_app_config"]
        for name, app in cluster.applications().items()
        if app.get("deployed_app_config") and app.get("status") != "DELETING"
    }


def smoke(
    base_url: str, apps: dict[str, AppConfig], wanted: dict[str, AppConfig]
) -> dict[str, str]:
    """POST each candidate (on its private route) its example request; name -> problem.

    A control version that splits its route under an experiment crosses its split as well.
    """
    problems = {}
    for name, app in apps.items():
        example = (app.get("args") or {}).get("example")
        url = base_url + CANDIDATE + name
        try:
            if example is None:
                answer = requests.get(url + "/health", timeout=30)
            else:
                answer = requests.post(url, data=json.dumps(example), timeout=30)
        except requests.RequestException as exc:
            problems[name] = f"smoke request to {url} failed: {exc}"
            continue
        if answer.status_code != 200:
            problems[name] = f"smoke request answered {answer.status_code}: {answer.text[:300]}"
    return problems


def with_split(app: AppConfig, split: TrafficSplit | None) -> AppConfig:
    """``app`` with its ingress's ``user_config`` set to ``split`` (None: removed).

    `render` lists the ingress in every graph application's ``deployments`` so that this is
    an in-place update; an application rendered before that gets its ingress listed here (its
    replicas restart once: Serve merges the runtime_env into listed deployments only).
    """
    deployments = [dict(d) for d in app.get("deployments") or []]
    if split is not None and not any(d.get("name") == INGRESS for d in deployments):
        deployments.append({"name": INGRESS})
    for d in deployments:
        if d.get("name") == INGRESS:
            # {} rather than none: Serve calls no reconfigure when a user_config is removed
            d["user_config"] = split.model_dump(mode="json") if split is not None else {}
    out = {k: v for k, v in app.items() if k != "deployments"}
    return out | {"deployments": deployments} if deployments else out


def split_in(app: AppConfig) -> TrafficSplit | None:
    """The split an application's ingress is configured with, if any (and if readable)."""
    for d in app.get("deployments") or []:
        if d.get("name") == INGRESS and d.get("user_config"):
            try:
                return TrafficSplit.model_validate(d["user_config"])
            except ValueError:  # not a split of this controller's (an older one's)
                return None
    return None


__all__ = [
    "CANDIDATE",
    "AppConfig",
    "comparable",
    "graph_of",
    "live_applications",
    "smoke",
    "split_in",
    "version_of",
    "with_split",
]
