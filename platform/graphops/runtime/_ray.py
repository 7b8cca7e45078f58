"""Connecting to Ray: an existing cluster (``RAY_ADDRESS``) or a local one started on demand.

Quiet by default: Ray's own logs stay in its log files and Ray Data shows no progress bars;
``GRAPHOPS_VERBOSE=1`` (`graphops --verbose`, inherited by subprocesses) shows them again.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import ray

from graphops._net import free_port, port_free
from graphops._verbosity import quiet, verbose
from graphops.errors import PortInUseError
from graphops.runtime.loopback import is_loopback, loopback_only
from graphops.runtime.serving import (
    ServingConfig,
    cluster_env,
    loopback_haproxy,
    stop_haproxy,
    usable,
)

_EXCLUDES = [".git", ".nox", ".graphops", "**/__pycache__", "*.parquet.d"]


def ensure_ray(
    repo: Path,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    serving: ServingConfig | None = None,
) -> dict[str, Any]:
    """Connect to Ray once per process and return the cluster's resources.

    With ``address`` (or ``$RAY_ADDRESS``) the driver joins that cluster and ships ``repo`` as the
    job's ``working_dir``; otherwise a local cluster is started (`init_local`), sized to this
    machine, listening on loopback only, serving by ``serving`` (default: Serve's proxy; a
    cluster that runs already keeps the path it started with). Unless `verbose`, Ray logs at
    WARNING, its workers' output stays in the log files (not on this console) and Ray Data's
    progress bars are off.
    """
    if not ray.is_initialized():
        target = address or os.environ.get("RAY_ADDRESS")
        loud = verbose()
        common: dict[str, Any] = {
            "logging_level": logging.INFO if loud else logging.WARNING,
            "log_to_driver": loud,
        }
        if target:
            # A head on this machine kept on loopback is reached only if this driver, too, keeps
            # 127.0.0.1 (Ray would resolve it to the host's address, where the head is not).
            with loopback_only() if _on_loopback(target) else nullcontext():
                ray.init(
                    address=target,
                    runtime_env={"working_dir": str(repo), "excludes": _EXCLUDES},
                    **common,
                )
        else:
            init_local(num_cpus or os.cpu_count(), serving=serving, **common)
    _console(verbose())
    return ray.cluster_resources()


def init_local(
    num_cpus: int | None, *, serving: ServingConfig | None = None, **options: Any
) -> ServingConfig:
    """Start a new local cluster in this process: loopback only, no dashboard UI or REST API.

    Every listener is on loopback (`loopback_only`). Ray 2.60 still starts its dashboard
    process (``start_head_processes`` in ``ray/_private/node.py`` always starts the API server);
    with ``include_dashboard=False`` it loads no dashboard module and serves no HTTP, and
    nothing graphops runs in-process needs it (Serve is started by handle, not over REST).

    ``serving`` is the cluster's serving path (default: Serve's proxy), as this machine can run
    it (`graphops.runtime.serving.usable`: HAProxy without its binary becomes direct ingress;
    callers that want to say so call `usable` first). Its variables are in ``os.environ`` while
    the cluster starts, so its processes read them, and restored after; HAProxy gets a folder
    of its own (removed when this process exits) and two free ports, so clusters on one machine
    never share them. Returns the path the cluster runs.
    """
    chosen, _ = usable(serving or ServingConfig())
    with loopback_only(), _environ(_local_env(chosen)):
        ray.init(
            address="local",  # a new cluster, never a `ray start` one running on this machine
            num_cpus=num_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            **options,
        )
    return chosen


def _local_env(serving: ServingConfig) -> dict[str, str]:
    """`cluster_env` for a cluster started in this process.

    HAProxy's files and ports are its own, every listener on loopback (`loopback_haproxy`).
    """
    if serving.ingress != "haproxy":
        return cluster_env(serving)
    state = Path(tempfile.mkdtemp(prefix="gh-", dir="/tmp"))  # short: HAPROXY_DIR_MAX
    atexit.register(shutil.rmtree, state, ignore_errors=True)
    atexit.register(stop_haproxy, state)  # first (last in): Ray leaves HAProxy running
    taken: set[int] = set()
    ports = [free_port(None, taken) for _ in range(4)]
    return cluster_env(
        loopback_haproxy(serving, state),
        state_dir=state,
        haproxy_ports=(ports[0], ports[1]),
        fallback_ports=(ports[2], ports[3]),
    )


@contextmanager
def _environ(variables: dict[str, str]) -> Iterator[None]:
    """``variables`` in ``os.environ`` inside (what processes started there inherit), restored after."""
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _on_loopback(address: str) -> bool:
    """Whether a Ray address (``host:port``, ``ray://host:port``) names this machine's loopback."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return is_loopback(host)
    except ValueError:  # a host name, or "auto"
        return False


def _console(loud: bool) -> None:
    """What Ray prints on this driver's console: everything, or warnings and errors only.

    Ray Data's progress bars and its INFO lines ("Starting execution of Dataset ...") and Ray
    Serve's driver-side INFO lines ("Connecting to existing Serve app ...", "Application ... is
    ready") are hidden unless ``loud``; Ray Data's own log file (``logs/ray-data`` in the Ray
    session directory) still gets every line.
    """
    level = logging.INFO if loud else logging.WARNING
    quiet("ray.serve")
    try:
        from ray.data import DataContext
    except ImportError:  # ray without the data extra: nothing to silence
        return
    DataContext.get_current().enable_progress_bars = loud
    if not loud:  # turned off on purpose: spare Ray Data's "Progress bars disabled" warning
        from ray.util.debug import log_once

        log_once("ray_data_progress_manager_disabled")
    for handler in logging.getLogger("ray.data").handlers:
        if type(handler).__name__ == "PlainRayHandler":  # the console; the file handler stays
            handler.setLevel(level)


def has_gpus() -> bool:
    """Whether the connected cluster has any GPU."""
    return ray.cluster_resources().get("GPU", 0) > 0


def cpu_nodes_labelled(selector: dict[str, str]) -> bool:
    """Whether a live node of the connected cluster carries every label of ``selector``."""
    return any(
        n.get("Alive") and (n.get("Labels") or {}).items() >= selector.items() for n in ray.nodes()
    )


def require_free_port(port: int, what: str = "Serve's HTTP proxy") -> None:
    """Refuse to start ``what`` on ``port`` when another process holds it on 127.0.0.1.

    Two Ray proxies on one port both bind it and the kernel splits the connections between
    them (about half the requests then answer 404), so the clash must be caught before.

    Raises:
        PortInUseError: The port is taken (which one, and what to do instead).
    """
    if not port_free(port):
        raise PortInUseError(
            f"Port {port} on 127.0.0.1 is already in use by another process, so {what} "
            f"cannot listen there (two proxies on one port each get about half the requests)",
            fix="Choose a free port with `--port N` (e.g. `--port 8080`), or stop what holds "
            f"it: the demo's clusters with `nox -s demo -- --down`, another `graphops serve` "
            f"with Ctrl-C (`ss -ltnp 'sport = :{port}'` shows who listens there).",
        )


def cluster_is_local() -> bool:
    """Whether the connected cluster's head runs on this machine (so its proxy binds here)."""
    host = ray.get_runtime_context().gcs_address.rsplit(":", 1)[0]
    if host in ("127.0.0.1", "localhost", "::1"):
        return True
    try:
        return host in socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        return False
