"""Local multi-node Ray clusters: a head plus CPU and logical-GPU worker nodes, on one machine.

Every node is a `ray start --block` process of its own (`graphops.demo.services`), with the
head's token, addressed as 127.0.0.1 (Ray puts its agents and gRPC servers on the host's address
all the same: a head that nodes join cannot be kept on loopback, see docs/security.md); a worker node advertising ``gpus`` has logical GPUs, no
hardware, so GPU placement (and its loss) can be tried on CPUs. A worker node without GPUs is
labelled ``graphops.io/node-kind=cpu`` (`cpu_labels`), as a CPU node of a cluster with GPUs must
be: CPU-only work selects that label, so it never lands on a GPU node. Nodes are named here (``cpu``,
``gpu``, ...) and known by their Ray node id once they joined, so placement reads as names.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

import graphops.demo.services as services
from graphops.errors import ConfigError
from graphops.runtime.schema import CPU_NODE_LABEL, CPU_NODE_VALUE

JOIN_TIMEOUT_S = 90.0
"""How long a new worker node gets to show up ALIVE in the cluster."""
ATTEMPTS = 3
"""Starts of one node before giving up: on a busy machine a raylet can miss Ray's fixed 30 s."""


def ray_state(head: services.Service, what: str, **params: Any) -> list[dict[str, Any]]:
    """Ray's state API through the head's dashboard, with its token: nodes, actors, tasks."""
    answer = requests.get(
        f"{head.url}/api/v0/{what}",
        params={"limit": 10000, "detail": "true", **params},
        headers={"Authorization": f"Bearer {head.token}"},
        timeout=30,
    )
    answer.raise_for_status()
    rows: list[dict[str, Any]] = answer.json()["data"]["result"]["result"]
    return rows


def alive_nodes(head: services.Service) -> list[dict[str, Any]]:
    """The cluster's nodes whose state is ALIVE (Ray's node records)."""
    return [n for n in ray_state(head, "nodes") if n.get("state") == "ALIVE"]


def node_kinds(head: services.Service) -> dict[str, str]:
    """Ray node id -> what the node is: ``head``, ``gpu worker`` or ``cpu worker``."""
    kinds = {}
    for node in alive_nodes(head):
        gpus = float((node.get("resources_total") or {}).get("GPU", 0))
        kind = "head" if node.get("is_head_node") else "gpu worker" if gpus else "cpu worker"
        kinds[str(node["node_id"])] = kind
    return kinds


def cpu_labels(gpus: int) -> str | None:
    """The Ray labels (``--labels``) of a worker node: a node without GPUs is a CPU node."""
    return None if gpus else f"{CPU_NODE_LABEL}={CPU_NODE_VALUE}"


class LocalCluster:
    """A head and named worker nodes on this machine; each node is stopped by its own pid."""

    def __init__(self, head: services.Service, head_id: str, tracking_uri: str) -> None:
        self.head = head
        self.tracking_uri = tracking_uri
        self.workers: dict[str, services.Service] = {}
        self.ids: dict[str, str] = {"head": head_id}  # node name -> Ray node id (stopped included)
        self.taken: set[int] = set(head.ports.values())

    @classmethod
    def around(cls, head: services.Service, tracking_uri: str) -> LocalCluster:
        """The cluster of a head started elsewhere (the main job's dev), no worker nodes yet."""
        [record] = [n for n in alive_nodes(head) if n.get("is_head_node")]
        return cls(head, record["node_id"], tracking_uri)

    @property
    def token(self) -> str:
        """The head's token, which every node and client presents."""
        return self.head.token or ""

    @property
    def address(self) -> str:
        """The GCS address (``RAY_ADDRESS``) of the cluster."""
        return f"127.0.0.1:{self.head.ports['port']}"

    def name(self, node_id: str) -> str:
        """The name a node was started under (its id when it is not one of ours)."""
        return {v: k for k, v in self.ids.items()}.get(node_id, node_id)

    def add_worker(self, name: str, *, cpus: int, gpus: int = 0) -> str:
        """Start worker node ``name`` and wait until it joined; its Ray node id.

        Raises:
            ConfigError: when the node did not join in `ATTEMPTS` starts (its log's end).
        """
        return self.add_workers(((name, cpus, gpus),))[name]

    def add_workers(self, specs: tuple[tuple[str, int, int], ...]) -> dict[str, str]:
        """Start worker nodes (name, CPUs, logical GPUs) at once, wait until each joined.

        Each node advertises a resource of its own (`marker`), by which it is found once it
        joined; one that does not join is started again, up to `ATTEMPTS` times.

        Raises:
            ConfigError: when a node did not join in `ATTEMPTS` starts (its log's end).
        """
        for name, *_ in specs:
            if name in self.workers:
                raise ConfigError(
                    f"A worker node named {name!r} already runs (pid {self.workers[name].pid}).",
                    fix="Stop it first (`stop_worker`) or choose another name.",
                )
        pending = {name: (cpus, gpus) for name, cpus, gpus in specs}
        for attempt in range(1, ATTEMPTS + 1):
            started = {
                name: services.start_ray_worker(
                    name,
                    self.head,
                    num_cpus=cpus,
                    num_gpus=gpus,
                    resources=json.dumps({marker(name): 1}),
                    labels=cpu_labels(gpus),
                    tracking_uri=self.tracking_uri,
                    taken=self.taken,
                )
                for name, (cpus, gpus) in pending.items()
            }
            failed: list[ConfigError] = []
            for name, worker in started.items():
                try:
                    self.ids[name] = _joined(self.head, worker, marker(name))
                except ConfigError as exc:
                    services.stop(worker)
                    failed.append(exc)
                    continue
                self.workers[name] = worker
                del pending[name]
            if not pending:
                return {name: self.ids[name] for name, *_ in specs}
            if attempt == ATTEMPTS:
                raise failed[0]
            time.sleep(5)
        raise AssertionError("unreachable")  # pragma: no cover

    def stop_worker(self, name: str) -> None:
        """Stop worker node ``name`` (its process group: raylet, agents, its workers)."""
        services.stop(self.workers.pop(name))

    def stop(self) -> None:
        """Stop every worker node, then the head."""
        for name in reversed(list(self.workers)):
            self.stop_worker(name)
        services.stop(self.head)


def marker(name: str) -> str:
    """The resource (one unit) worker node ``name`` advertises, so that it can be told apart."""
    return f"graphops_node_{name}"


def _joined(head: services.Service, worker: services.Service, resource: str) -> str:
    """Wait until the node holding ``resource`` is ALIVE; its id (ConfigError if it exits)."""
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while time.monotonic() < deadline:
        if not worker.alive():
            tail = Path(worker.log).read_text(errors="replace")[-2000:]
            raise ConfigError(
                f"Ray worker node {worker.name} exited before it joined. The end of "
                f"{worker.log}:\n{tail}",
                fix="Read the log; a port may be taken, or the machine too busy.",
            )
        new = [
            n["node_id"] for n in alive_nodes(head) if resource in (n.get("resources_total") or {})
        ]
        if new:
            return str(new[0])
        time.sleep(1)
    raise ConfigError(
        f"Ray worker node {worker.name} did not join in {JOIN_TIMEOUT_S:.0f} s (see {worker.log}).",
        fix="The machine may be too busy; try again.",
    )


def _retried(start: Callable[[], services.Service]) -> services.Service:
    """Start a head and wait until it answers, up to `ATTEMPTS` times."""
    for attempt in range(1, ATTEMPTS + 1):
        service = start()
        try:
            services.wait_ready(service)  # stops the service when it never answers
        except ConfigError:
            if attempt == ATTEMPTS:
                raise
            time.sleep(5)
            continue
        return service
    raise AssertionError("unreachable")  # pragma: no cover


def start_local_cluster(
    name: str,
    work_dir: Path,
    *,
    tracking_uri: str,
    workers: tuple[tuple[str, int, int], ...] = (("cpu", 2, 0), ("gpu", 1, 1)),
) -> LocalCluster:
    """A head and ``workers`` (name, CPUs, logical GPUs) joined to it; all stopped on failure.

    The head declares no CPUs: it runs the GCS, the dashboard and Serve's controller only.
    """
    taken: set[int] = set()
    head = _retried(
        lambda: services.start_ray(
            name,
            work_dir,
            dashboard_port=None,
            serve_port=None,
            tracking_uri=tracking_uri,
            num_cpus=0,
            taken=taken,
            loopback=False,  # worker nodes join it
        )
    )
    cluster = LocalCluster.around(head, tracking_uri)
    cluster.taken |= taken
    try:
        cluster.add_workers(workers)
    except BaseException:
        cluster.stop()
        raise
    return cluster
