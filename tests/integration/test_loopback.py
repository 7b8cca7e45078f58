"""Every listening socket of the local clusters graphops starts, against docs/security.md.

Three kinds of cluster, each read from its processes' sockets (address, port, owning process):

- ``session``: the in-process cluster `graphops validate`, `batch` and `serve` start
  (`graphops.runtime.online.init_local`, the session fixture), with Serve's proxy up;
- ``head``: a `ray start --head` cluster started as the demo starts one
  (`graphops.demo.services.start_ray`, token auth), on free ports, stopped by its pid;
- ``multi-node head`` and ``multi-node worker``: a head that worker nodes join and one worker
  node (`graphops.demo.nodes`), which Ray 2.60 cannot keep on loopback.

What listens beyond loopback must equal, row for row, the table under "What listens beyond
loopback" in docs/security.md (cluster, process, port, address): a new listener or a stale row
fails. The first two kinds have no row: everything they open is on loopback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from graphops.demo import services
from graphops.demo.nodes import LocalCluster, start_local_cluster
from graphops.demo.services import RAY_PORTS
from graphops.errors import ConfigError
from graphops.runtime.loopback import is_loopback

REPO = Path(__file__).resolve().parents[2]
SECURITY = REPO / "docs" / "security.md"
TABLE_MARK = "<!-- listeners: checked row for row by tests/integration/test_loopback.py -->"
KINDS = ("session", "head", "multi-node head", "multi-node worker")
SETTLE_S = 60.0
"""How long a cluster may take to open every listener (agents and workers start late)."""

DEFAULT_METRICS_PORTS = {"autoscaler-metrics": 44217, "dashboard-metrics": 44227}
"""Ray's fixed defaults (AUTOSCALER_METRIC_PORT, DASHBOARD_METRIC_PORT) of the in-process cluster."""

Row = tuple[str, str, str, str]
"""(cluster, process, port, address kind), as in the docs table."""


# -- reading the docs table (pure) ---------------------------------------------------------------


def documented(text: str) -> list[Row]:
    """The rows of the listener table that follows `TABLE_MARK` in ``text`` (first four cells)."""
    lines = text.split(TABLE_MARK, 1)[1].lstrip("\n").splitlines() if TABLE_MARK in text else []
    rows: list[Row] = []
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [c.strip().strip("`").strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or set(cells[0]) <= {"-", " ", ":"} or cells[0] == "Cluster":
            continue
        rows.append((cells[0], cells[1], cells[2], cells[3]))
    return rows


def test_the_docs_table_parses_and_names_known_clusters() -> None:
    rows = documented(SECURITY.read_text())
    assert rows, f"no listener table after {TABLE_MARK!r} in {SECURITY}"
    assert len(rows) == len(set(rows)), "a row is listed twice"
    assert {r[0] for r in rows} <= set(KINDS), {r[0] for r in rows} - set(KINDS)
    sample = f"x\n{TABLE_MARK}\n| Cluster | Process | Port | Address | Why |\n| --- | --- |\n"
    assert documented(
        sample + "| head | `raylet` | node-manager-port | all interfaces | y |\n\n"
    ) == [("head", "raylet", "node-manager-port", "all interfaces")]
    assert documented("no table here") == []


# -- reading sockets -----------------------------------------------------------------------------


def role(proc: psutil.Process) -> str:
    """What a cluster process is, from its name and command line."""
    if proc.pid == os.getpid():
        return "driver"
    name = proc.name()
    if name in ("gcs_server", "raylet"):
        return "GCS server" if name == "gcs_server" else name
    for prefix, what in (
        ("ray::DashboardAgent", "dashboard agent"),
        ("ray::RuntimeEnvAgent", "runtime-env agent"),
        ("ray-dashboard-", "dashboard module"),
        ("ray::", "worker"),
    ):
        if name.startswith(prefix):
            return what
    cmdline = " ".join(proc.cmdline())
    for needle, what in (
        ("ray.util.client.server", "Ray Client server"),
        ("log_monitor.py", "log monitor"),
        ("monitor.py", "autoscaler monitor"),
        ("dashboard/dashboard.py", "dashboard"),
        ("ray start", "ray start"),
    ):
        if needle in cmdline:
            return what
    return name


def address_kind(ip: str) -> str:
    if is_loopback(ip):
        return "loopback"
    return "all interfaces" if ip in ("0.0.0.0", "::") else "host address"


def listeners(procs: Iterable[psutil.Process], ports: dict[int, str]) -> set[tuple[str, str, str]]:
    """(process, port name or "random", address kind) of every listening socket of ``procs``."""
    out = set()
    for proc in procs:
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    port = ports.get(conn.laddr.port, "random")
                    out.add((role(proc), port, address_kind(conn.laddr.ip)))
        except psutil.Error:
            continue
    return out


def processes(marker: str, roots: Iterable[int] = ()) -> Iterator[psutil.Process]:
    """Processes whose command line holds ``marker`` (a session or temp dir), ``roots`` and all
    their children."""
    found: dict[int, psutil.Process] = {}
    for pid in roots:
        with_children(found, pid)
    for proc in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in proc.info["cmdline"] or []):
            with_children(found, proc.pid)
    yield from found.values()


def with_children(found: dict[int, psutil.Process], pid: int) -> None:
    try:
        proc = psutil.Process(pid)
        found[pid] = proc
        found.update({c.pid: c for c in proc.children(recursive=True)})
    except psutil.Error:
        return


def beyond_loopback(kind: str, seen: set[tuple[str, str, str]]) -> set[Row]:
    return {(kind, *s) for s in seen if s[2] != "loopback"}


def observe(read: Callable[[], set[Row]], expected: set[Row]) -> set[Row]:
    """What ``read`` sees once it equals ``expected``, or after `SETTLE_S` (late listeners)."""
    deadline = time.monotonic() + SETTLE_S
    seen = read()
    while seen != expected and time.monotonic() < deadline:
        time.sleep(3)
        seen = read()
    return seen


def report(kind: str, seen: set[tuple[str, str, str]]) -> None:
    """Every listener, loopback included, for the record (pytest -s shows it)."""
    for process, port, where in sorted(seen):
        print(f"{kind:18} {process:20} {port:28} {where}")


def expected(kind: str) -> set[Row]:
    return {r for r in documented(SECURITY.read_text()) if r[0] == kind}


def session_ports() -> dict[int, str]:
    """Port -> its `ray start` flag name, for the in-process cluster (Ray picks them)."""
    import ray

    node = ray._private.worker._global_node  # no public getter for a node's ports
    params = node._ray_params
    ports = {int(node.gcs_address.rsplit(":", 1)[1]): "port"}
    for name in RAY_PORTS:
        value = getattr(params, name.replace("-", "_"), None)
        if value:
            ports[int(value)] = name
    return ports | {int(p): k for k, p in DEFAULT_METRICS_PORTS.items()}


@pytest.mark.usefixtures("ray_cluster")
def test_graphops_own_cluster_listens_on_loopback_only(serve_port: int) -> None:
    import ray

    session = ray._private.worker._global_node.get_session_dir_path()  # no public getter
    ports = session_ports() | {serve_port: "serve"}

    def read() -> set[tuple[str, str, str]]:
        return listeners(processes(session, [os.getpid()]), ports)

    seen = read()
    report("session", seen)
    # It found the cluster: its GCS, raylet and Serve's proxy (the proxy on loopback).
    assert {"GCS server", "raylet", "driver"} <= {p for p, _, _ in seen}, seen
    assert ("worker", "serve", "loopback") in seen, seen
    got = observe(lambda: beyond_loopback("session", read()), expected("session"))
    assert got == expected("session"), _diff(got, expected("session"))


def test_ray_start_head_listens_on_loopback_only(tmp_path: Path) -> None:
    head = start_head(tmp_path)
    try:
        assert head.loopback
        got = observe(lambda: cluster_rows("head", head), expected("head"))
        seen = listeners(cluster_procs(head), named(head))
        report("head", seen)
        assert {"GCS server", "raylet", "dashboard"} <= {p for p, _, _ in seen}, seen
        assert got == expected("head"), _diff(got, expected("head"))
    finally:
        services.stop(head)


def start_head(work: Path) -> services.Service:
    """A single-node head as the demo starts one, on free ports; once more if it never answers
    (a busy machine; `wait_ready` stops it)."""
    for attempt in (1, 2):
        head = services.start_ray(
            "ray-listen",
            work,
            dashboard_port=None,
            serve_port=None,
            tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
            num_cpus=1,
            taken=set(),
        )
        try:
            services.wait_ready(head)
        except ConfigError:
            if attempt == 2:
                raise
            continue
        return head
    raise AssertionError("unreachable")


def test_a_multi_node_cluster_keeps_the_documented_listeners_beyond_loopback(
    tmp_path: Path,
) -> None:
    cluster = start_local_cluster(
        "ray-listen-mn",
        tmp_path,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        workers=(("cpu", 1, 0),),
    )
    # One actor on each node, held by a driver of its own: workers (Serve's replicas among them)
    # listen too, and exist only while a job has them.
    with (
        _stopped(cluster),
        subprocess.Popen(
            [sys.executable, "-c", ACTORS, cluster.address],
            env=os.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": cluster.token},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as driver,
    ):
        assert driver.stdout is not None
        assert driver.stdout.readline().strip() == "ready", "the actors did not start"
        [worker] = cluster.workers.values()
        want = expected("multi-node head") | expected("multi-node worker")

        def read() -> set[Row]:
            return cluster_rows("multi-node head", cluster.head) | cluster_rows(
                "multi-node worker", worker
            )

        got = observe(read, want)
        report("multi-node head", listeners(cluster_procs(cluster.head), named(cluster.head)))
        report("multi-node worker", listeners(cluster_procs(worker), named(worker)))
        assert got == want, _diff(got, want)
        driver.kill()  # else it ends when `with` closes its stdin


@contextmanager
def _stopped(cluster: LocalCluster) -> Iterator[None]:
    try:
        yield
    finally:
        cluster.stop()


ACTORS = """
import sys, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On
ray.init(address=sys.argv[1] if len(sys.argv) > 1 else "auto", logging_level="ERROR")
@ray.remote(num_cpus=0)
class Here:
    def ping(self): return 1
actors = [Here.options(scheduling_strategy=On(n["NodeID"], soft=False)).remote()
          for n in ray.nodes() if n["Alive"]]
ray.get([a.ping.remote() for a in actors], timeout=120)
print("ready", flush=True)
sys.stdin.read()
"""
"""A driver holding one actor on each node of the cluster until its stdin closes."""


def named(service: services.Service) -> dict[int, str]:
    return {port: name for name, port in service.ports.items()}


def cluster_procs(service: services.Service) -> list[psutil.Process]:
    """The `ray start` process of ``service``, its children and every process of its temp dir.

    The separator matters: a worker node's temp dir is the head's plus a suffix.
    """
    assert service.temp_dir
    return list(processes(service.temp_dir + "/", [service.pid]))


def cluster_rows(kind: str, service: services.Service) -> set[Row]:
    return beyond_loopback(kind, listeners(cluster_procs(service), named(service)))


def _diff(got: set[Row], want: set[Row]) -> str:
    new = "\n".join(f"  {r}" for r in sorted(got - want)) or "  none"
    stale = "\n".join(f"  {r}" for r in sorted(want - got)) or "  none"
    return (
        f"Listeners beyond loopback differ from docs/security.md.\nNew (not in the table):\n"
        f"{new}\nStale (in the table, not seen):\n{stale}"
    )
