"""What a local cluster started the way graphops starts it listens on, read from its sockets.

Ray 2.60 binds its own gRPC servers (GCS, raylet, every worker, the agents) on all interfaces and
has no option to bind them to loopback; graphops' own listeners (Serve's HTTP proxy, the
dashboard when started) are on 127.0.0.1. docs/security.md lists both.
"""

from __future__ import annotations

import ipaddress
import os

import psutil
import pytest

RAY_INTERNAL = ("gcs_server", "raylet", "ray::", "python", "driver")
"""Processes whose gRPC servers Ray 2.60 binds on all interfaces (no option in Ray to change it)."""


def cluster_processes() -> list[psutil.Process]:
    """The session cluster's processes: those started under its session dir, and their children."""
    import ray

    session = ray._private.worker._global_node.get_session_dir_path()  # no public getter
    found: dict[int, psutil.Process] = {os.getpid(): psutil.Process()}
    for proc in psutil.process_iter(["cmdline"]):
        if any(session in part for part in proc.info["cmdline"] or []):
            found[proc.pid] = proc
            found.update({c.pid: c for c in proc.children(recursive=True)})
    return list(found.values())


def listening(procs: list[psutil.Process]) -> list[tuple[str, int, str]]:
    out = []
    for proc in procs:
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    # This process is the cluster's driver: its core worker serves gRPC too.
                    name = "driver" if proc.pid == os.getpid() else proc.name()
                    out.append((conn.laddr.ip, conn.laddr.port, name))
        except psutil.Error:
            continue
    return out


@pytest.mark.usefixtures("ray_cluster")
def test_serve_listens_on_loopback_only_and_the_rest_is_rays_known_grpc(serve_port: int) -> None:
    sockets = listening(cluster_processes())
    assert sockets, "no listening socket found for the session cluster"

    serve_http = [(ip, name) for ip, port, name in sockets if port == serve_port]
    assert serve_http and all(ip == "127.0.0.1" for ip, _ in serve_http), serve_http

    exposed = [s for s in sockets if not ipaddress.ip_address(s[0]).is_loopback]
    unknown = [s for s in exposed if not s[2].startswith(RAY_INTERNAL)]
    assert not unknown, f"listening beyond loopback, not Ray's own gRPC: {unknown}"
    # The exceptions, by process, for the record (pytest -s shows them).
    print(sorted({(name, ip) for ip, _, name in exposed}))
