"""The guards in front of a graph's routes, through Serve's real HTTP proxy on loopback.

``GET /<graph>/stats`` answers only to the cluster's token (compared by the replica with the
token its own process has); request headers over 64 KiB get 431 on every route, although Ray's
proxy (uvicorn with httptools) passes a 1 MB header on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from graphops.controller.cluster import auth_token
from graphops.controller.live import ingress_totals
from graphops.graph import GraphPackage
from graphops.registry import Registry
from graphops.runtime.online import OnlineApp, deploy, undeploy

pytestmark = pytest.mark.usefixtures("serve_port", "champion")


@pytest.fixture(scope="module")
def served(digits: GraphPackage, registry: Registry, serve_port: int) -> Iterator[OnlineApp]:
    online = deploy(digits, registry, port=serve_port)
    try:
        yield online
    finally:
        undeploy(online.name)


@pytest.fixture(scope="module")
def token() -> str:
    """The session cluster's token: Ray 2.60 turns token auth on for a new local cluster."""
    found = auth_token()
    assert found, "the session cluster has no token (RAY_AUTH_MODE=disabled in this shell?)"
    return found


def test_stats_answer_only_to_the_cluster_token(served: OnlineApp, token: str) -> None:
    url = f"{served.url}/stats"
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": token}):
        refused = requests.get(url, headers=headers, timeout=30)
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"] == 'Bearer realm="ray"'
        body = refused.json()
        assert set(body) == {"error", "fix", "code"}, body
        assert body["error"].startswith("GET /digits/stats needs the cluster's token"), body
        assert "replica" not in refused.text and token not in refused.text
        print(refused.status_code, refused.text)

    answer = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert {"replica", "raw", "graph"} <= set(answer.json())

    # `graphops status --live` reads it with the token it sends to the dashboard...
    seen = ingress_totals(url, 1, headers={"Authorization": f"Bearer {token}"})
    assert len(seen) == 1
    # ...and without it gets the route's own message.
    with pytest.raises(requests.HTTPError, match=r"401.*needs the cluster's token"):
        ingress_totals(url, 1)


def test_the_other_routes_stay_open(served: OnlineApp) -> None:
    for sub in ("/health", "/openapi.json", "/docs"):
        assert requests.get(served.url + sub, timeout=30).status_code == 200, sub


def test_headers_over_64_kib_get_431_through_serves_proxy(served: OnlineApp) -> None:
    example = served.args.example
    assert example is not None
    near = {"X-Pad": "a" * (60 * 1024)}
    ok = requests.post(served.url, json=example, headers=near, timeout=60)
    assert ok.status_code == 200, ok.text

    huge = {"X-Pad": "a" * (1024 * 1024)}
    for method, sub in (("POST", ""), ("GET", "/health"), ("GET", "/stats")):
        answer = requests.request(method, served.url + sub, json=example, headers=huge, timeout=60)
        assert answer.status_code == 431, (method, sub, answer.status_code, answer.text[:300])
        body = answer.json()
        assert set(body) == {"error", "fix", "code"}, body
        assert "hold 1,048," in body["error"] and "65,536" in body["error"], body
    print(answer.status_code, json.dumps(body))
