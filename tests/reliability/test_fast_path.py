"""digits on the suite's fast path: the answer, 404, 413 and the token route, through HAProxy
(the stable port) and on an ingress replica's own port (direct ingress).

graphops' guarantees are enforced by the ingress itself, so they must hold whichever server
hands it the request: the request scope differs from Serve's proxy path only in what the server
puts there (`_direct_ingress_asgi` in ray/serve/_private/replica.py: ``root_path`` is the
application's route prefix, ``path`` the full path, as through the proxy). Runs on the session
cluster of the reliability suite (`--ingress`, default haproxy); skipped on the proxy path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import psutil
import pytest
import ray
import requests

from graphops.controller.cluster import auth_token
from graphops.graph import GraphPackage
from graphops.registry import Registry
from graphops.runtime import read_rows
from graphops.runtime.loopback import is_loopback
from graphops.runtime.online import OnlineApp, deploy, replica_urls, undeploy
from graphops.runtime.serving import ServingConfig

pytestmark = pytest.mark.usefixtures("champion")

APP = "digits-fast"
LIMIT = 4096
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def served(
    digits: GraphPackage, registry: Registry, serve_port: int, serving: ServingConfig
) -> Iterator[OnlineApp]:
    if not serving.fast:
        pytest.skip("the suite runs on Serve's proxy (--ingress proxy)")
    online = deploy(
        digits, registry, name=APP, port=serve_port, route=f"/{APP}", max_body_bytes=LIMIT
    )
    try:
        yield online
    finally:
        undeploy(online.name)


def own_ports(serving: ServingConfig) -> list[str]:
    """The ingress replicas' own URLs (with HAProxy in front, as HAProxy's manager sees them)."""
    if serving.ingress == "direct":
        return replica_urls(APP, f"/{APP}")
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    assert client is not None
    groups = ray.get(client._controller.get_target_groups.remote(APP, from_proxy_manager=True))
    return [
        f"http://127.0.0.1:{t.port}/{APP}"
        for g in groups
        if g.app_name == APP
        for t in g.targets
        if t.name.startswith("SERVE_REPLICA")
    ]


@pytest.fixture(scope="module")
def urls(served: OnlineApp, serving: ServingConfig) -> dict[str, str]:
    """The stable route (through HAProxy, or Serve's proxy for direct) and a replica's own."""
    own = own_ports(serving)
    assert own, "no ingress replica listens on a port of its own"
    low, high = serving.direct_ports
    assert all(low <= (urlsplit(url).port or 0) <= high for url in own), own
    return {"stable": served.url, "replica": own[0]}


@pytest.mark.parametrize("where", ["stable", "replica"])
def test_the_answer_404_413_and_the_token_route(
    urls: dict[str, str], digits: GraphPackage, where: str
) -> None:
    url = urls[where]
    assert digits.validation_dataset is not None
    row = read_rows(digits.validation_dataset)[0]
    answer = requests.post(url, json={"pixels": row["pixels"]}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["label"] in range(10) and 0 <= answer.json()["confidence"] <= 1

    missing = requests.get(f"{url}/nothing", timeout=30)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found", missing.text
    assert f"/{APP}/nothing" in missing.json()["error"]  # the full path: root_path as via proxy

    large = requests.post(url, data=b"[" + b"0," * LIMIT + b"0]", timeout=30, headers=JSON)
    assert large.status_code == 413, large.text

    assert requests.get(f"{url}/stats", timeout=30).status_code == 401
    token = auth_token()
    assert token
    stats = requests.get(f"{url}/stats", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert stats.status_code == 200 and "replica" in stats.json(), stats.text
    assert requests.get(f"{url}/health", timeout=30).status_code == 200


def test_a_path_outside_every_application_is_a_404_before_any_graph(
    urls: dict[str, str], serve_port: int
) -> None:
    outside = requests.post(f"http://127.0.0.1:{serve_port}/no-such-graph", data=b"{}", timeout=30)
    assert outside.status_code == 404
    replica = urls["replica"].rsplit("/", 1)[0]
    other = requests.post(f"{replica}/no-such-graph", data=json.dumps({}), timeout=30)
    assert other.status_code == 404  # the replica's server refuses a path outside its prefix


def test_every_listener_of_the_fast_path_is_on_loopback(
    served: OnlineApp, serving: ServingConfig
) -> None:
    """What the fast path opens: HAProxy (its frontend, stats and Prometheus ports: Ray's
    template binds the last two on every interface, `loopback_haproxy` rewrites them) and the
    ingress replicas' own ports, all on 127.0.0.1.

    Not checked here: each replica's inter-deployment gRPC server, which Ray 2.60 binds on
    ``[::]:0`` on every path (``_on_initialized`` in ray/serve/_private/replica.py).
    """
    low, high = serving.direct_ports
    listening = [
        (proc.name(), conn.laddr)
        for proc in psutil.Process().children(recursive=True)
        for conn in _listening(proc)
        if proc.name() == "haproxy" or low <= conn.laddr.port <= high
    ]
    if serving.ingress == "haproxy":
        assert any(name == "haproxy" for name, _ in listening), listening
    assert any(low <= addr.port <= high for _, addr in listening), listening
    beyond = [(name, addr) for name, addr in listening if not is_loopback(addr.ip)]
    assert not beyond, beyond


def _listening(proc: psutil.Process) -> list:
    try:
        return [c for c in proc.net_connections("inet") if c.status == psutil.CONN_LISTEN]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []
