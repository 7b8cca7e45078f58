"""How an environment's cluster serves HTTP: Ray Serve's proxy, direct ingress or HAProxy.

Plain data and pure functions, part of the runtime's contract (like `graphops.runtime.schema`).
Ray 2.60 reads these choices from the environment of its processes when they start (the Serve
controller, proxies and replicas import ``ray.serve._private.constants`` once), so they are a
property of the *cluster*, not of one application: `cluster_env` is what a cluster's processes
get (``ray start``'s environment locally, the RayService containers' ``env`` on Kubernetes).
Measured here (2 cores, a no-op app, keep-alive client, p50): proxy 7-10 ms, HAProxy 1.0 ms on
the same stable routes, direct ingress (the replica's own port) 0.7 ms; docs/performance.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from graphops._models import FrozenModel

Ingress = Literal["proxy", "direct", "haproxy"]
HAPROXY_BINARY = "haproxy"
"""Found on ``PATH`` when `ServingConfig.haproxy_binary` is unset (Debian: /usr/sbin/haproxy)."""
DIRECT_PORTS = (30000, 31000)
"""Ray's default range of the ingress replicas' own HTTP ports."""
HAPROXY_DIR_MAX = 27
"""Longest HAProxy state folder: Ray adds the node id (56 characters) and a file name to it, and
HAProxy refuses unix socket paths over 97 characters ("socket path ... too long")."""
DRAIN_S = 5.0
"""Seconds a stopping ingress replica stays reachable on its own port (fast paths).

Ray's default (30 s, ``RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S``) is for a load balancer
outside the cluster (an ALB) to deregister the replica; it also raises every ingress's
``graceful_shutdown_timeout_s`` to 35 s, so each retired version of a rollout keeps its replicas
(and their CPUs) 35 s. graphops' only balancer on these paths is the cluster's own HAProxy, which
drops a stopping replica as soon as the controller broadcasts it (0.1 s coalescing, a reload),
and retries a refused connection on another replica; 5 s covers a busy machine.
"""


IDLE_S = 300.0
"""Seconds an ingress with `ServingConfig.scale_to_zero` waits idle before going to 0 replicas."""


class ServingConfig(FrozenModel):
    """How requests reach a graph's ingress replicas and cross between its replicas."""

    ingress: Annotated[
        Ingress,
        Field(
            description="proxy: Serve's own HTTP proxy (Python) on every node; direct: each "
            "ingress replica also listens on its own port (Ray's direct ingress; the proxy keeps "
            "the stable routes, on the head only); haproxy: HAProxy on the Serve port routes the "
            "stable routes straight to the ingress replicas' ports (Ray 2.60's HAProxy mode; "
            "needs the haproxy binary)."
        ),
    ] = "proxy"
    grpc: Annotated[
        bool,
        Field(
            description="Calls between replicas (a graph's remote stages, a split's other "
            "version) go over gRPC instead of Ray actor calls (RAY_SERVE_USE_GRPC_BY_DEFAULT)."
        ),
    ] = False
    colocate: Annotated[
        bool,
        Field(
            description="A model stage that needs no GPU (here), keeps the default scaling and "
            "is not overridden runs inside the ingress replica: no hop, no second process."
        ),
    ] = True
    haproxy_binary: Annotated[
        str | None,
        Field(description="Path of the haproxy binary (ingress haproxy); None: found on PATH."),
    ] = None
    direct_ports: Annotated[
        tuple[int, int],
        Field(description="Range of the ingress replicas' own HTTP ports (direct, haproxy)."),
    ] = DIRECT_PORTS

    drain_s: Annotated[
        float,
        Field(
            ge=0,
            description="Seconds a stopping ingress replica stays reachable on its own port "
            "before it refuses new connections (direct, haproxy; "
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S, Ray's default 30). Raise it when a "
            "load balancer outside the cluster targets the replicas' ports.",
        ),
    ] = DRAIN_S

    scale_to_zero: Annotated[
        bool,
        Field(
            description="Each graph's ingress autoscales down to 0 replicas after `idle_s` "
            "without requests (Serve's autoscaling, min_replicas 0): an idle graph holds no "
            "process; its first request waits for a replica to start (the cold start, "
            "docs/performance.md). Needs ingress proxy: only Serve's proxy holds a request "
            "while the application has no replica. For dev, not for a latency target.",
        ),
    ] = False
    idle_s: Annotated[
        float,
        Field(
            ge=1,
            description="Seconds without requests before an idle graph's ingress goes to 0 "
            "replicas (scale_to_zero; Serve's downscale_delay_s).",
        ),
    ] = IDLE_S
    ingress_cpus: Annotated[
        float | None,
        Field(
            gt=0,
            le=64,
            description="CPUs each graph's ingress replica reserves (Ray's num_cpus), e.g. 0.05 "
            "to pack many idle graphs on a small cluster; a release's override of the ingress "
            "wins. None: what the graph's stages declare, scaled to cluster.app_cpu_budget.",
        ),
    ] = None

    @model_validator(mode="after")
    def _zero_needs_proxy(self) -> ServingConfig:
        if self.scale_to_zero and self.ingress != "proxy":
            raise ValueError(
                f"scale_to_zero needs ingress proxy, not {self.ingress}: with 0 replicas the "
                "direct and HAProxy paths have no replica port to send a request to (and graphops "
                "has not verified Ray 2.60's fallback proxy waking one); set serving.ingress: "
                "proxy, or scale_to_zero: false"
            )
        return self

    def ingress_autoscaling(self) -> dict[str, float | int] | None:
        """The ingress's ``autoscaling_config`` for ``scale_to_zero`` (None: fixed replicas).

        One replica at start (a new version answers its smoke at once), none after `idle_s`
        without requests, one again as soon as a request waits at the proxy.
        """
        if not self.scale_to_zero:
            return None
        return {
            "min_replicas": 0,
            "max_replicas": 1,
            "initial_replicas": 1,
            "downscale_delay_s": self.idle_s,
            "upscale_delay_s": 0,
        }

    @field_validator("direct_ports")
    @classmethod
    def _port_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1024 <= low <= high <= 65535:
            raise ValueError(
                "direct_ports is a range [first, last] of unprivileged ports, first <= last, "
                f"e.g. [{DIRECT_PORTS[0]}, {DIRECT_PORTS[1]}] (Ray's default)"
            )
        return value

    @property
    def fast(self) -> bool:
        """Whether the ingress replicas answer HTTP themselves (direct or haproxy)."""
        return self.ingress != "proxy"

    def haproxy_path(self) -> str | None:
        """The haproxy binary to run: the configured one, else the one on ``PATH`` (or None)."""
        return self.haproxy_binary or shutil.which(HAPROXY_BINARY)


HAPROXY_RETRY_ON = "conn-failure empty-response"
"""When HAProxy sends a request again, to another replica: a refused connection (Ray's default,
nothing was sent), and a connection closed with no answer at all (an ingress replica that died
holding the request). Safe here: a graph's answer has no side effect (the ingress retries a
dead stage replica's call the same way); 5xx answers and timeouts are never retried."""


def cluster_env(
    serving: ServingConfig,
    *,
    state_dir: Path | None = None,
    haproxy_ports: tuple[int, int] | None = None,
    fallback_ports: tuple[int, int] | None = None,
) -> dict[str, str]:
    """Environment variables a cluster's Ray processes need for ``serving`` (Ray 2.60 names).

    Args:
        serving: The environment's choice.
        state_dir: Where HAProxy keeps its config, sockets and server state (Ray puts each
            node's files in a folder named by its node id there; Ray's default is
            /tmp/haproxy-serve); at most `HAPROXY_DIR_MAX` characters.
        haproxy_ports: (stats, metrics) ports of HAProxy; give free ones on a shared machine
            (Ray's defaults 8404, 9101).
        fallback_ports: (HTTP, gRPC) ports of the Serve proxy HAProxy falls back to on the
            head while an application has no ingress replica; give free ones on a shared
            machine (Ray's defaults 8500, 9500: a second cluster there never becomes ready).
    """
    env: dict[str, str] = {}
    if serving.fast:
        # Ray's own bundle of throughput settings: direct ingress, user code and router on the
        # replica's main loop, request logs buffered, GC frozen after start.
        env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
        env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] = str(serving.direct_ports[0])
        env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(serving.direct_ports[1])
        env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] = f"{serving.drain_s:g}"
    env["RAY_SERVE_USE_GRPC_BY_DEFAULT"] = "1" if serving.grpc else "0"
    if serving.ingress == "haproxy":
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
        env["RAY_SERVE_HAPROXY_RETRY_ON"] = HAPROXY_RETRY_ON
        binary = serving.haproxy_path()
        if binary:
            env["RAY_SERVE_HAPROXY_BINARY_PATH"] = binary
        if state_dir is not None:
            if len(str(state_dir)) > HAPROXY_DIR_MAX:
                raise ValueError(
                    f"HAProxy's state folder {state_dir} is longer than {HAPROXY_DIR_MAX} "
                    "characters: its unix sockets (folder, node id, file) would exceed HAProxy's "
                    "97; use a short folder such as /tmp/gh-<8 hex>"
                )
            env |= {
                "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(state_dir / "haproxy.cfg"),
                "RAY_SERVE_HAPROXY_SOCKET_PATH": str(state_dir / "admin.sock"),
                "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(state_dir),
                "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(state_dir / "server-state"),
                "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(state_dir / "metrics.sock"),
            }
        if haproxy_ports is not None:
            env["RAY_SERVE_HAPROXY_STATS_PORT"] = str(haproxy_ports[0])
            env["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(haproxy_ports[1])
        if fallback_ports is not None:
            env["RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"] = str(fallback_ports[0])
            env["RAY_SERVE_FALLBACK_PROXY_GRPC_PORT"] = str(fallback_ports[1])
    return env


LOOPBACK_WRAPPER = """#!/bin/sh
# graphops: HAProxy with every listener of its config on 127.0.0.1. Ray 2.60's template binds
# the stats and Prometheus frontends on all interfaces (`bind *:PORT`, `bind :PORT`); a local
# cluster keeps everything on loopback (docs/security.md). Ray runs this as its HAProxy binary
# (RAY_SERVE_HAPROXY_BINARY_PATH), with the config after -f, at start and at every reload.
previous=""
for arg in "$@"; do
    if [ "$previous" = "-f" ] && [ -f "$arg" ]; then
        sed -i -E 's/^([[:space:]]*bind[[:space:]]+)[*]?:([0-9]+)/\\1127.0.0.1:\\2/' "$arg"
    fi
    previous="$arg"
done
exec {binary} "$@"
"""


def loopback_haproxy(serving: ServingConfig, folder: Path) -> ServingConfig:
    """``serving`` with its HAProxy kept on loopback: a wrapper in ``folder`` as its binary.

    For a cluster on this machine whose listeners stay on 127.0.0.1: the wrapper rewrites the
    stats and metrics ``bind`` lines of each config Ray writes to 127.0.0.1, then runs the real
    binary. Unchanged when ``serving`` runs no HAProxy or has no binary (see `usable`).
    """
    binary = serving.haproxy_path()
    if serving.ingress != "haproxy" or binary is None:
        return serving
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "haproxy-loopback"
    wrapper.write_text(LOOPBACK_WRAPPER.format(binary=binary))
    wrapper.chmod(0o755)
    return serving.model_copy(update={"haproxy_binary": str(wrapper)})


def stop_haproxy(folder: Path, timeout_s: float = 5) -> list[int]:
    """Stop the HAProxy processes whose config is under ``folder``; their pids (Linux /proc).

    Ray starts HAProxy as a child of its HAProxy manager (a Ray worker, in a process group of
    its own), so stopping a local cluster's `ray start` group, or this process exiting, leaves
    it running, holding the Serve port. A cluster's own folder (`cluster_env`'s ``state_dir``)
    names exactly its HAProxy processes: SIGTERM, then SIGKILL after ``timeout_s``.
    """
    marker = str(folder).rstrip("/") + "/"
    found = []
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = entry.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.decode(errors="replace").startswith(marker) for arg in argv[1:]) and (
            Path(argv[0].decode(errors="replace")).name == HAPROXY_BINARY
        ):
            found.append(int(entry.parent.name))
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(Path(f"/proc/{pid}").exists() for pid in found) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return found


def usable(serving: ServingConfig) -> tuple[ServingConfig, str | None]:
    """``serving`` as this machine can run it, and why it was changed (None: unchanged).

    HAProxy mode needs the haproxy binary; without it the cluster takes direct ingress (the
    same fast path on the replicas' ports, the stable routes through Serve's proxy).
    """
    if serving.ingress == "haproxy" and serving.haproxy_path() is None:
        reason = (
            "ingress haproxy needs the haproxy binary (Debian: apt-get install haproxy); "
            "serving with direct ingress instead"
        )
        return serving.model_copy(update={"ingress": "direct"}), reason
    return serving, None


__all__ = [
    "DIRECT_PORTS",
    "DRAIN_S",
    "HAPROXY_DIR_MAX",
    "Ingress",
    "ServingConfig",
    "cluster_env",
    "loopback_haproxy",
    "usable",
]
