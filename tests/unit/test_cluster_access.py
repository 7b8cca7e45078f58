"""A missing token, a refused token and an unreachable cluster are told apart, with the fix."""

from __future__ import annotations

import datetime
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graphops._net import free_port
from graphops.cli import app
from graphops.controller.cluster import Cluster, token_variable
from graphops.controller.status import _unreadable
from graphops.environments import EnvironmentConfig, Release, ReleaseEntry, write_release
from graphops.errors import (
    ApplyError,
    ClusterUnreachableError,
    MissingTokenError,
    TokenRefusedError,
)
from tests.fixtures.locks import lock

REPO = Path(__file__).resolve().parents[2]
TOKEN = "right-token"


class _TokenAuth(BaseHTTPRequestHandler):
    """Answers like a Ray dashboard with token auth: 401 without the right bearer token."""

    def do_GET(self) -> None:
        ok = self.headers.get("Authorization") == f"Bearer {TOKEN}"
        body = b'{"applications": {}}' if ok else b"Unauthorized"
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def dashboard() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenAuth)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _env(url: str, token_env: str | None = "GRAPHOPS_DEV_TOKEN") -> EnvironmentConfig:
    return EnvironmentConfig.model_validate(
        {"name": "dev", "cluster": {"dashboard": url, "token_env": token_env}}
    )


def test_a_missing_token_names_the_variable_and_the_demo_file(
    dashboard: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRAPHOPS_DEV_TOKEN", raising=False)
    with pytest.raises(MissingTokenError) as caught:
        Cluster(_env(dashboard)).applications()
    text = str(caught.value)
    assert "$GRAPHOPS_DEV_TOKEN is not set" in text
    assert "export GRAPHOPS_DEV_TOKEN=$(cat .graphops/demo/ray-dev.token)" in text
    assert isinstance(caught.value, ApplyError)  # callers catching ApplyError still do
    assert _unreadable(caught.value) == "no token"


def test_a_refused_token_is_not_a_missing_one(
    dashboard: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPHOPS_DEV_TOKEN", "stale-token")
    with pytest.raises(TokenRefusedError, match=r"refused the token in \$GRAPHOPS_DEV_TOKEN") as c:
        Cluster(_env(dashboard)).applications()
    assert _unreadable(c.value) == "token refused"
    monkeypatch.setenv("GRAPHOPS_DEV_TOKEN", TOKEN)
    assert Cluster(_env(dashboard)).applications() == {}


def test_without_token_env_the_variable_is_ray_auth_token(
    dashboard: str, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path) + "/absent")
    env = _env(dashboard, token_env=None)
    assert token_variable(env) == "RAY_AUTH_TOKEN"
    with pytest.raises(MissingTokenError, match=r"Export RAY_AUTH_TOKEN \(or RAY_AUTH_TOKEN_PATH"):
        Cluster(env).applications()


def test_an_unreachable_cluster_says_so() -> None:
    port = free_port()  # a port nothing listens on
    with pytest.raises(ClusterUnreachableError, match="is unreachable") as caught:
        Cluster(_env(f"http://127.0.0.1:{port}"), timeout_s=2).applications()
    assert _unreadable(caught.value) == "unreachable"


def test_status_shows_no_token_names_the_variable_and_exits_1(
    dashboard: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(REPO / "environments", tmp_path / "environments")
    path = tmp_path / "environments/dev/environment.yaml"
    path.write_text(path.read_text().replace("http://127.0.0.1:8265", dashboard))
    at = datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)
    write_release(
        tmp_path, "dev", Release(graphs={"digits": ReleaseEntry(lock=lock(), promoted_at=at)})
    )
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "absent"))
    result = CliRunner().invoke(app, ["--repo", str(tmp_path), "status", "--env", "dev"])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "no token" in text and "$RAY_AUTH_TOKEN is not set" in text
    assert "export RAY_AUTH_TOKEN=$(cat .graphops/demo/ray-dev.token)" in text
    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)  # read: absent (nothing deployed), exit 0
    result = CliRunner().invoke(app, ["--repo", str(tmp_path), "status", "--env", "dev"])
    assert result.exit_code == 0 and "absent" in result.output, result.output
    # Every environment: prod names no dashboard here ($GRAPHOPS_PROD_DASHBOARD unset) and pins
    # nothing, which is no reason to fail (the main job's last step reads them all).
    monkeypatch.delenv("GRAPHOPS_PROD_DASHBOARD", raising=False)
    result = CliRunner().invoke(app, ["--repo", str(tmp_path), "status"])
    assert result.exit_code == 0 and "absent" in result.output, result.output


class _SlowThenRunning(BaseHTTPRequestHandler):
    """A dashboard busy with starting replicas: its first answer is late, the next says RUNNING."""

    calls = 0

    def do_GET(self) -> None:
        type(self).calls += 1
        if type(self).calls == 1:
            threading.Event().wait(1.0)  # longer than the client's timeout
        body = b'{"applications": {"a": {"status": "RUNNING", "deployments": {}}}}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


def test_wait_outlasts_one_late_answer_but_not_a_closed_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowThenRunning)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("GRAPHOPS_DEV_TOKEN", TOKEN)
    try:
        busy = Cluster(_env(f"http://127.0.0.1:{server.server_address[1]}"), timeout_s=0.3)
        assert busy.wait(["a"], timeout_s=30) == {}  # the late answer was asked again
        assert _SlowThenRunning.calls >= 2
    finally:
        server.shutdown()
        server.server_close()
    closed = Cluster(_env(f"http://127.0.0.1:{free_port(None, set())}"), timeout_s=0.3)
    with pytest.raises(ClusterUnreachableError):
        closed.wait(["a"], timeout_s=30)  # refused: said at once, not after the deadline
