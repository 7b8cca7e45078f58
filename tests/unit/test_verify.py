"""Verify on apply, the pure parts: a lock against its record, and what running apps report."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from graphops.controller.lock import record_mismatches
from graphops.controller.verify import Running, check_running, running
from graphops.errors import TamperingError
from graphops.registry import ValidationRecord
from graphops.runtime.schema import APP_IMPORT_PATH
from tests.fixtures.locks import lock


def record_of(**changes: object) -> ValidationRecord:
    locked = lock()
    record = ValidationRecord(
        run_id="run1",
        graph="digits",
        version=locked.version,
        content_hash=locked.content_hash,
        status="passed",
        models={n: p.uri for n, p in locked.models.items()},
        digests={n: p.digest for n, p in locked.models.items()},
    )
    return record.model_copy(update=changes)


def test_a_record_matches_exactly_its_lock() -> None:
    assert record_mismatches(record_of(), lock(), "digits") == []


def test_each_field_a_record_did_not_validate_is_named() -> None:
    other = "sha256:" + "d" * 64
    found = record_mismatches(
        record_of(content_hash=other, version="0.9.0", models={"logits": "models:/digits/2"}),
        lock(),
        "digits",
    )
    assert found == [
        ("version", "1.0.0", "0.9.0"),
        ("content_hash", lock().content_hash, other),
        ("models.logits", "models:/digits/1", "models:/digits/2"),
    ]
    assert record_mismatches(record_of(graph="feed"), lock(), "digits")[0] == (
        "graph",
        "digits",
        "feed",
    )
    assert record_mismatches(record_of(status="failed"), lock())[0] == (
        "validation_run",
        "a passed run",
        "a failed run",
    )
    [digest] = record_mismatches(record_of(digests={}), lock())
    assert digest == ("models.logits.digest", "sha256:" + "a" * 64, "(none)")


def test_tampering_names_the_app_what_its_lock_expects_and_what_it_reported() -> None:
    check_running("dev", [Running("digits-1.0.0-abc", "sha256:aa", "sha256:aa")])
    with pytest.raises(TamperingError) as caught:
        check_running("dev", [Running("digits-1.0.0-abc", "sha256:aa", "sha256:bb")])
    assert str(caught.value).startswith(
        "dev: tampering: a running application does not run the code its lock pins. Got "
        '"sha256:bb" for the content hash digits-1.0.0-abc reports, expected sha256:aa (its '
        "lock). Nothing was changed on the cluster."
    )
    assert "graphops apply --env dev" in str(caught.value)
    with pytest.raises(TamperingError, match=r"cannot verify what runs.*answered 500"):
        check_running("dev", [Running("a", "sha256:aa", None, "GET x answered 500")])


@pytest.fixture
def serve() -> Iterator[str]:
    """A loopback server answering GET /digits/health like a graph ingress (content hash bb)."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/digits/health"
            self.send_response(200 if ok else 404)
            self.end_headers()
            self.wfile.write(json.dumps({"content_hash": "sha256:bb"} if ok else {}).encode())

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_running_asks_each_routed_running_app_once(serve: str) -> None:
    def app(route: str | None, status: str = "RUNNING") -> dict[str, object]:
        config = {"import_path": APP_IMPORT_PATH, "route_prefix": route}
        return {"status": status, "deployed_app_config": config}

    locked = lock()
    apps = {"a": app("/digits"), "b": app(None), "c": app("/digits", "DEPLOYING"), "d": app("/x")}
    found = running(serve, apps, {n: locked for n in ("a", "b", "c", "d", "gone")})
    assert [(r.app, r.reported, r.tampered) for r in found] == [
        ("a", "sha256:bb", True),
        ("d", None, False),
    ]
    assert found[1].problem.endswith("/x/health answered 404")
