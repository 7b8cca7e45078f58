"""The online runtime on a real local Ray with Serve: real HTTP requests on loopback."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from ray import serve

from graphops import ServeError
from graphops.graph import GraphPackage, load_graph
from graphops.registry import Registry, ResolvedModel
from graphops.runtime import read_rows, run_local
from graphops.runtime.online import OnlineApp, batch_stats, deploy, undeploy
from graphops.runtime.schema import DeploymentOverride

pytestmark = pytest.mark.usefixtures("serve_port", "champion")

CHAIN = '''
"""Three CPU nodes, no model: x -> a -> b -> c. b refuses negative input."""

import numpy as np
from pydantic import BaseModel

from graphops import Graph, Resources, node


class Request(BaseModel):
    x: float


class Response(BaseModel):
    c: float


@node(resources=Resources(cpus=0.1))
def a(x: np.ndarray) -> np.ndarray:
    return x + 1


@node(resources=Resources(cpus=0.1))
def b(a: np.ndarray) -> np.ndarray:
    if (a < 1).any():
        raise ValueError("negative input")
    return a * 2


@node(resources=Resources(cpus=0.1))
def c(b: np.ndarray) -> np.ndarray:
    return b - 3


graph = Graph("chain", "1.0.0", Request, Response, nodes=[a, b, c])
'''


@pytest.fixture(scope="module")
def served(digits: GraphPackage, registry: Registry, serve_port: int) -> Iterator[OnlineApp]:
    online = deploy(digits, registry, port=serve_port)
    try:
        yield online
    finally:
        undeploy(online.name)


@pytest.fixture(scope="module")
def chain_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("chain")
    (repo / "graphs" / "chain").mkdir(parents=True)
    (repo / "graphs" / "__init__.py").touch()
    (repo / "graphs" / "chain" / "__init__.py").write_text(CHAIN)
    return repo


def post(url: str, body: object) -> requests.Response:
    return requests.post(url, data=json.dumps(body), timeout=60)


def test_answers_one_object_and_a_list_like_the_local_runner(
    served: OnlineApp, digits: GraphPackage, registry: Registry
) -> None:
    rows = read_rows(digits.validation_dataset)[:5]
    bodies = [{"pixels": r["pixels"]} for r in rows]
    local = run_local(digits, registry, bodies).responses
    one = post(served.url, bodies[0])
    assert one.status_code == 200 and one.headers["content-type"] == "application/json"
    assert one.json()["label"] == local[0]["label"]
    assert one.json()["confidence"] == pytest.approx(local[0]["confidence"], abs=1e-6)
    many = post(served.url, bodies)
    assert many.status_code == 200
    assert [r["label"] for r in many.json()] == [r["label"] for r in local]
    assert [r["label"] for r in many.json()] == [r["digit"] for r in rows]


def test_bad_requests_get_422_and_413_with_readable_errors(served: OnlineApp) -> None:
    short = post(served.url, {"pixels": [1, 2]})
    assert short.status_code == 422
    assert "field pixels: List should have at least 64 items" in short.json()["error"]
    assert short.json()["detail"][0]["loc"] == ["body", "pixels"]
    second_row = post(served.url, [{"pixels": [0] * 64}, {"pixels": [99] * 64}])
    assert second_row.status_code == 422 and "row 2, field pixels.0" in second_row.json()["error"]
    extra = post(served.url, {"pixels": [0] * 64, "colour": "red"})
    assert extra.status_code == 422 and "colour" in extra.json()["error"]
    garbage = requests.post(served.url, data=b"{pixels", timeout=30)
    assert garbage.status_code == 422 and "Invalid JSON" in garbage.json()["error"]
    big = requests.post(served.url, data=b"[" + b"0," * 700_000 + b"0]", timeout=30)
    assert big.status_code == 413 and "at most 1048576 bytes" in big.json()["error"]
    chunked = requests.post(served.url, data=(b"0," * 100_000 for _ in range(8)), timeout=30)
    assert chunked.status_code == 413  # no Content-Length: counted while streaming


def test_strict_json_and_content_type(served: OnlineApp) -> None:
    coerced = post(served.url, {"pixels": [True] * 64})
    assert coerced.status_code == 422 and "valid number" in coerced.json()["error"]
    twice = requests.post(served.url, data=b'{"pixels": [], "pixels": [1]}', timeout=30)
    assert twice.status_code == 422 and '"pixels" appears twice' in twice.json()["error"]
    nan = requests.post(served.url, data=b'{"pixels": [NaN]}', timeout=30)
    assert nan.status_code == 422 and "NaN is not a JSON number" in nan.json()["error"]
    form = requests.post(served.url, data=b"{}", headers={"Content-Type": "text/plain"}, timeout=30)
    assert form.status_code == 415 and "Content-Type: application/json" in form.json()["fix"]


def stalled(port: int, path: str) -> socket.socket:
    """A client that announces 1,000 bytes of body, sends 10 and then waits."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n".encode()
        + b'{"x": 1.0 '
    )
    return sock


def test_slow_clients_get_408_or_503_and_never_starve_others(
    chain_repo: Path, registry: Registry, serve_port: int
) -> None:
    chain = load_graph(chain_repo, "chain")
    online = deploy(
        chain,
        registry,
        name="chain-slow",
        port=serve_port,
        route="/chain-slow",
        body_timeout_s=3,
        max_slow_bodies=4,
    )
    clients: list[socket.socket] = []
    try:
        clients = [stalled(serve_port, "/chain-slow") for _ in range(10)]
        answer = requests.post(online.url, data=b'{"x": 1.0}', timeout=30)
        assert answer.status_code == 200 and answer.json() == {"c": 1.0}
        statuses = sorted(int(sock.recv(4096).split()[1]) for sock in clients)
        assert set(statuses) <= {408, 503} and 503 in statuses and 408 in statuses
        assert statuses.count(408) <= 4  # at most max_slow_bodies were waited on
    finally:
        for sock in clients:
            sock.close()
        undeploy(online.name)


def test_health_openapi_docs_and_unknown_routes(served: OnlineApp, champion: ResolvedModel) -> None:
    health = requests.get(served.health_url, timeout=30).json()
    assert health["status"] == "ok" and health["version"] == "1.0.0"
    assert health["models"]["logits"] == {"uri": champion.uri, "digest": champion.digest}
    doc = requests.get(served.openapi_url, timeout=30).json()
    schema = doc["components"]["schemas"]["DigitsRequest"]["properties"]["pixels"]
    assert schema["minItems"] == 64 and doc["servers"] == [{"url": "/digits"}]
    assert "swagger-ui" in requests.get(served.docs_url, timeout=30).text
    missing = requests.get(f"{served.url}/predict", timeout=30)
    assert missing.status_code == 404 and f"POST {served.args.route}" in missing.json()["fix"]
    wrong_method = requests.get(served.url, timeout=30)
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"


def test_concurrent_requests_are_batched(served: OnlineApp) -> None:
    body = served.args.example
    with ThreadPoolExecutor(max_workers=32) as pool:
        codes = list(pool.map(lambda _: post(served.url, body).status_code, range(256)))
    assert codes == [200] * 256
    sizes = batch_stats(served.name, "logits")["batch_sizes"]
    assert max(sizes) > 1, sizes
    assert sum(size * count for size, count in sizes.items()) >= 256


def test_fusion_decides_the_deployment_count_not_the_answers(
    chain_repo: Path, registry: Registry, serve_port: int
) -> None:
    package = load_graph(chain_repo, "chain")
    answers = {}
    for fuse, name in ((True, "chain-fused"), (False, "chain-unfused")):
        online = deploy(
            package,
            registry,
            name=name,
            route=f"/{name}",
            fuse=fuse,
            port=serve_port,
            cpu_budget=0.45,
        )
        try:
            deployments = set(serve.status().applications[name].deployments)
            assert deployments == ({"ingress"} if fuse else {"ingress", "a", "b", "c"})
            assert [d.name for d in online.deployments] == sorted(
                deployments, key=["ingress", "a", "b", "c"].index
            )
            answers[fuse] = post(online.url, [{"x": 1.0}, {"x": 2.5}]).json()
            failed = post(online.url, {"x": -5})
            assert failed.status_code == 500
            error = failed.json()
            assert error["node"] == "b" and "ValueError: negative input" in error["error"]
            # The 0-based index of `def b` is the 1-based line of its decorator, where b starts.
            line = CHAIN.splitlines().index("def b(a: np.ndarray) -> np.ndarray:")
            assert error["file"].endswith(f"graphs/chain/__init__.py:{line}")
        finally:
            undeploy(name)
    assert answers[True] == answers[False] == [{"c": 1.0}, {"c": 4.0}]


def test_a_replica_that_cannot_start_is_a_serve_error(
    digits: GraphPackage, registry: Registry, champion: ResolvedModel, serve_port: int
) -> None:
    tampered = champion.model_copy(update={"digest": "sha256:" + "0" * 64})
    with pytest.raises(ServeError, match="failed to start") as caught:
        deploy(  # small CPU budget: the digits app of this module runs beside it
            digits,
            registry,
            name="digits-bad",
            route="/digits-bad",
            pins={"logits": tampered},
            port=serve_port,
            cpu_budget=0.4,
        )
    assert "digits-bad" not in serve.status().applications  # deleted, nothing lingers
    assert "changed since they were pinned" in str(caught.value)


def test_a_replica_that_cannot_be_scheduled_times_out_with_serves_reason(
    digits: GraphPackage, registry: Registry, serve_port: int
) -> None:
    too_big = {"logits": DeploymentOverride(cpus=64)}
    with pytest.raises(ServeError, match="did not start within 15 s") as caught:
        deploy(
            digits,
            registry,
            name="digits-big",
            route="/digits-big",
            overrides=too_big,
            port=serve_port,
            cpu_budget=None,
            timeout_s=15,
        )
    assert "digits-big" not in serve.status().applications
    assert "CPU" in str(caught.value)


def test_serve_command_prints_url_curl_and_answers(
    tmp_path: Path, repo_copy: Path, registry_path: Path
) -> None:
    from graphops._net import free_port
    from tests.integration.test_cli import graphops

    repo = tmp_path / "repo"
    shutil.copytree(repo_copy, repo)
    port = free_port()
    result = graphops(
        repo, "serve", "digits", "--port", str(port), "--once", tracking=registry_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"Serving http://127.0.0.1:{port}/digits" in out
    assert f"curl -s -X POST http://127.0.0.1:{port}/digits" in out
    assert f"http://127.0.0.1:{port}/digits/openapi.json" in out
    assert '-> 200 {"label":' in out
    assert np.isfinite(float(out.split('"confidence":')[1].split("}")[0]))
