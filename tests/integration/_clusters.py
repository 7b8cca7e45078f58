"""Fresh `ray start --head` clusters for tests that need one of their own, and Ray's serve CLI.

Each is started as the main job starts its clusters (`graphops.demo.services`: token auth,
loopback, free ports) and stopped by its pid; `serve_cli` runs Ray's OWN `serve` command against
it with its token, as a user of the committed files would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from graphops.demo import services
from graphops.runtime.serving import ServingConfig

SERVE = str(Path(sys.executable).with_name("serve"))


@contextmanager
def fresh_cluster(
    name: str,
    work: Path,
    tracking_uri: str,
    num_cpus: float = 2,
    serving: ServingConfig | None = None,
) -> Iterator[services.Service]:
    """A fresh cluster named ``name`` (logs and token under ``work``), ready; stopped after.

    ``tracking_uri`` is where its replicas load models from (when the lock's models name none);
    ``serving`` its serving path (default: Serve's proxy).
    """
    service = services.start_ray(
        name,
        work,
        dashboard_port=None,
        serve_port=None,
        tracking_uri=tracking_uri,
        num_cpus=num_cpus,
        taken=set(),
        serving=serving,
    )
    try:
        services.wait_ready(service)
        yield service
    finally:
        services.stop(service)


def serve_url(service: services.Service) -> str:
    """Where the cluster's Serve proxy answers."""
    return f"http://127.0.0.1:{service.ports['serve']}"


def cli_env(service: services.Service) -> dict[str, str]:
    """The environment of a Ray (or graphops) command on ``service``: its token, no RAY_ADDRESS."""
    env = os.environ | {"RAY_AUTH_TOKEN": service.token or "", "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    return env


def serve_cli(service: services.Service, *args: str) -> subprocess.CompletedProcess[str]:
    """`serve <args> --address <dashboard>` (Ray's own CLI) on ``service``."""
    return subprocess.run(
        [SERVE, *args, "--address", service.url],
        env=cli_env(service),
        capture_output=True,
        text=True,
        timeout=120,
    )


def settled(service: services.Service, timeout_s: float = 240) -> dict[str, dict[str, Any]]:
    """Application -> its `serve status` entry, once every one is RUNNING or DEPLOY_FAILED."""
    deadline, apps = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        shown = serve_cli(service, "status")
        assert shown.returncode == 0, shown.stderr
        apps = (yaml.safe_load(shown.stdout) or {}).get("applications") or {}
        if apps and all(a["status"] in ("RUNNING", "DEPLOY_FAILED") for a in apps.values()):
            return apps
        time.sleep(2)
    return apps
