"""A port another process holds on 127.0.0.1 is refused before a proxy binds it, with the fix."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from graphops._net import port_free
from graphops.errors import PortInUseError, ServeError
from graphops.runtime._ray import require_free_port

REPO = Path(__file__).resolve().parents[2]
CLI = (sys.executable, "-c", "from graphops.cli import main; main()")


def test_a_held_port_is_refused_with_what_to_do() -> None:
    with socket.socket() as held:  # another process's server, as the demo's Serve proxy is
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert not port_free(port)
        with pytest.raises(PortInUseError) as caught:
            require_free_port(port)
    text = str(caught.value)
    assert f"Port {port} on 127.0.0.1 is already in use" in text
    assert "--port N" in text and "nox -s demo -- --down" in text
    assert isinstance(caught.value, ServeError)


def test_a_free_port_passes() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert port_free(port)
    require_free_port(port)


def test_a_port_in_time_wait_is_free() -> None:
    """A connection closed a moment ago (TIME_WAIT) does not hold the port for a new server."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end waits in TIME_WAIT
        client.close()
    assert port_free(port)


def test_graphops_serve_refuses_a_held_port_before_starting_ray(tmp_path: Path) -> None:
    """`graphops serve` next to the demo's proxy: refused at once, no cluster started.

    Run as its own process, as a user runs it: in this pytest process a session Ray cluster
    (with Serve) may already run, and Serve's existing proxy is never a clash.
    """
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = os.environ | {
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "RAY_ADDRESS": "",
            "COLUMNS": "200",
        }
        result = subprocess.run(
            [*CLI, "--repo", str(REPO), "serve", "digits", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    text = " ".join(output.split())  # the panel wraps lines
    assert f"Port {port} on 127.0.0.1 is already in use" in text
    assert "--port N" in text and "nox -s demo -- --down" in text
