"""Serve applications this process deployed: waiting for one to run, its replicas, its batches.

Used by `graphops.runtime.online.deploy` (the wait, with the replica's own error as the reason)
and re-exported there (`replica_urls`, `batch_stats`) for the CLI, tests and benchmarks.
"""

from __future__ import annotations

import re
import time
from typing import Any

import ray
from ray import serve

from graphops.errors import ServeError
from graphops.runtime._ray import cluster_is_local
from graphops.runtime.schema import INGRESS


def replica_urls(app_name: str, route: str) -> list[str]:
    """The ingress replicas' own URLs of ``app_name`` (direct ingress), ``route`` appended.

    Empty when the cluster has no direct ingress (Serve's proxy only, or HAProxy, which answers
    on the stable port itself). A replica on this machine is given on 127.0.0.1 (the controller
    names the node's address, where a loopback cluster does not listen).
    """
    from ray.serve.context import _get_global_client  # no public getter for target groups

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return []
    groups = ray.get(client._controller.get_target_groups.remote(app_name))
    local = cluster_is_local()
    urls = []
    for group in groups:
        if group.app_name != app_name or str(group.protocol) not in (
            "HTTP",
            "RequestProtocol.HTTP",
        ):
            continue
        for target in group.targets:
            if not target.name.startswith("SERVE_REPLICA"):
                continue  # a proxy (the app has no running replica yet, or HAProxy in front)
            host = "127.0.0.1" if local else target.ip
            urls.append(f"http://{host}:{target.port}{route}")
    return sorted(urls)


def batch_stats(app_name: str, stage: str) -> dict[str, Any]:
    """Batch sizes seen so far by one replica running ``stage`` (for tests and benchmarks).

    The stage's own deployment when it has one, else the ingress it runs in (colocated).
    """
    status = serve.status().applications.get(app_name)
    if status is not None and stage in status.deployments:
        return serve.get_deployment_handle(stage, app_name=app_name).stats.remote().result()
    handle = serve.get_deployment_handle(INGRESS, app_name=app_name)
    return handle.stats.remote(stage).result()


def wait_running(app_name: str, timeout_s: float, graph: str) -> None:
    """Poll Serve until ``app_name`` runs; raise `ServeError` with the reason when it cannot."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = serve.status().applications.get(app_name)
        state = status.status if status is not None else "NOT_STARTED"
        if state == "RUNNING":
            return
        if state == "DEPLOY_FAILED" or time.monotonic() > deadline:
            messages = [status.message] if status is not None and status.message else []
            if status is not None:
                messages += [d.message for d in status.deployments.values() if d.message]
            waited = (
                "failed to start"
                if state == "DEPLOY_FAILED"
                else (f"did not start within {timeout_s:g} s")
            )
            raise ServeError(
                f"Application '{app_name}' {waited}: {_reason(messages)}",
                fix="Fix what the message names (a replica that needs more CPUs/GPUs than the "
                "cluster has free waits forever); `graphops run` reproduces node failures "
                "locally and replica logs are under /tmp/ray/session_latest/logs/serve.",
                graph=graph,
            )
        time.sleep(0.25)


def _reason(messages: list[str]) -> str:
    """The replica's own graphops error when there is one, else Serve's most specific message."""
    for text in messages:
        ours = re.findall(r"graphops\.errors\.\w+: (.+)", text)
        if ours:
            return ours[-1].strip()[:500]
    for text in reversed(messages):  # deployment messages (scheduling, crashes) come last
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1][:500] if "Traceback" in text else " ".join(lines)[:500]
    return "no reason given by Serve"
