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

import shutil
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from graphops._models import FrozenModel

Ingress = Literal["proxy", "direct", "haproxy"]
HAPROXY_BINARY = "haproxy"
"""Found on ``PATH`` when `ServingConfig.haproxy_binary` is unset (Debian: /usr/sbin/haproxy)."""
DIRECT_PORTS = (30000, 31000)
"""Ray's default range of the ingress replicas' own HTTP ports."""


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

    @property
    def fast(self) -> bool:
        """Whether the ingress replicas answer HTTP themselves (direct or haproxy)."""
        return self.ingress != "proxy"

    def haproxy_path(self) -> str | None:
        """The haproxy binary to run: the configured one, else the one on ``PATH`` (or None)."""
        return self.haproxy_binary or shutil.which(HAPROXY_BINARY)


def cluster_env(
    serving: ServingConfig,
    *,
    state_dir: Path | None = None,
    haproxy_ports: tuple[int, int] | None = None,
) -> dict[str, str]:
    """Environment variables a cluster's Ray processes need for ``serving`` (Ray 2.60 names).

    Args:
        serving: The environment's choice.
        state_dir: Where HAProxy keeps its config, sockets and server state; give one per
            cluster when several clusters share a machine (Ray's default is /tmp/haproxy-serve).
        haproxy_ports: (stats, metrics) ports of HAProxy; give free ones on a shared machine
            (Ray's defaults 8404, 9101).
    """
    env: dict[str, str] = {}
    if serving.fast:
        # Ray's own bundle of throughput settings: direct ingress, user code and router on the
        # replica's main loop, request logs buffered, GC frozen after start.
        env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
        env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] = str(serving.direct_ports[0])
        env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(serving.direct_ports[1])
    env["RAY_SERVE_USE_GRPC_BY_DEFAULT"] = "1" if serving.grpc else "0"
    if serving.ingress == "haproxy":
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
        binary = serving.haproxy_path()
        if binary:
            env["RAY_SERVE_HAPROXY_BINARY_PATH"] = binary
        if state_dir is not None:
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
    return env


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


__all__ = ["DIRECT_PORTS", "Ingress", "ServingConfig", "cluster_env", "usable"]
