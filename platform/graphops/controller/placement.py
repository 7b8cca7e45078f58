"""Placement: the node (and its kind) of each live replica, and CPU-only work kept off GPU nodes.

On a cluster with GPU nodes (`cluster.gpus: true`) every CPU-only deployment selects the Ray node
label ``graphops.io/node-kind=cpu`` (`graphops.runtime.schema.CPU_NODE_SELECTOR`): a hard
constraint, so Ray never spills CPU work onto a GPU node's free CPUs. This module reads where the
replicas landed (Serve's details, Ray's node records through the state API), flags any CPU-only
replica on a GPU node, and refuses, before anything is deployed, a cluster where no node carries
the label: its replicas would stay pending forever.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from graphops.environments import EnvironmentConfig
from graphops.errors import ApplyError
from graphops.runtime.schema import CPU_NODE_LABEL, CPU_NODE_SELECTOR, CPU_NODE_VALUE, INGRESS

CPU_NODE_FIX = (
    f"Start CPU nodes with `ray start --labels {CPU_NODE_LABEL}={CPU_NODE_VALUE} ...` (KubeRay: "
    "the CPU worker group's rayStartParams, as rendered in rayservice.yaml), or set "
    "cluster.gpus: false where the cluster has no GPU nodes."
)
"""What to do when no node of a cluster with GPUs can take CPU-only work."""


class Replica(BaseModel):
    """One running replica: where it runs and whether it may run there."""

    deployment: Annotated[str, Field(description="application/deployment.")]
    node_id: Annotated[str, Field(description="The Ray node id it runs on.")]
    node_kind: Annotated[
        str, Field(description="gpu (a node with GPUs), cpu (labelled), head, other or ?.")
    ]
    cpu_only: Annotated[bool, Field(description="The deployment asks for no GPU.")]
    misplaced: Annotated[
        bool, Field(description="A CPU-only replica on a GPU node: what the rule forbids.")
    ]


def node_kind(node: dict[str, Any]) -> str:
    """What a Ray node record (state API) is: ``gpu``, ``cpu`` (labelled), ``head`` or ``other``."""
    if float((node.get("resources_total") or {}).get("GPU", 0)) > 0:
        return "gpu"
    if is_cpu_node(node):
        return "cpu"
    return "head" if node.get("is_head_node") else "other"


def is_cpu_node(node: dict[str, Any]) -> bool:
    """Whether a node record carries ``graphops.io/node-kind=cpu``."""
    return bool((node.get("labels") or {}).items() >= CPU_NODE_SELECTOR.items())


def kinds(nodes: list[dict[str, Any]]) -> dict[str, str]:
    """Node id -> kind of each ALIVE node."""
    return {str(n["node_id"]): node_kind(n) for n in nodes if n.get("state") == "ALIVE"}


def node_ids(details: dict[str, Any]) -> dict[str, list[str]]:
    """Deployment -> the node ids its RUNNING replicas run on (one entry per replica, sorted)."""
    out = {}
    for name, d in sorted((details.get("deployments") or {}).items()):
        nodes = [
            str(r.get("node_id") or "?")
            for r in d.get("replicas") or []
            if r.get("state") == "RUNNING"
        ]
        out[name] = sorted(nodes)
    return out


def _cpu_only(deployment: dict[str, Any]) -> bool:
    actor = (deployment.get("deployment_config") or {}).get("ray_actor_options") or {}
    return not float(actor.get("num_gpus") or 0)


def replicas(app: str, details: dict[str, Any], node_kinds: dict[str, str]) -> list[Replica]:
    """Every RUNNING replica of application ``app`` (Serve's details), with its node's kind."""
    out = []
    for name, d in sorted((details.get("deployments") or {}).items()):
        cpu_only = _cpu_only(d)
        for r in d.get("replicas") or []:
            if r.get("state") != "RUNNING":
                continue
            node = str(r.get("node_id") or "?")
            kind = node_kinds.get(node, "?")
            out.append(
                Replica(
                    deployment=f"{app}/{name}",
                    node_id=node,
                    node_kind=kind,
                    cpu_only=cpu_only,
                    misplaced=cpu_only and kind == "gpu",
                )
            )
    return sorted(out, key=lambda r: (r.deployment, r.node_id))


def unplaceable(env: EnvironmentConfig, nodes: list[dict[str, Any]], apps: list[str]) -> str:
    """Why CPU-only work of ``apps`` can run nowhere on ``env``'s cluster ('' when it can).

    Only a cluster with GPU nodes (`cluster.gpus`) pins CPU-only work to labelled nodes.
    """
    if (
        not env.cluster.gpus
        or not apps
        or any(is_cpu_node(n) for n in nodes if n.get("state") == "ALIVE")
    ):
        return ""
    stages = ", ".join(f"{a}/{INGRESS}" for a in sorted(apps))
    return (
        f"No live node of {env.name}'s cluster carries the label {CPU_NODE_LABEL}="
        f"{CPU_NODE_VALUE}, which the CPU-only deployments of environments/{env.name} require "
        f"(cluster.gpus is true): {stages} and every stage that asks for no GPU would stay "
        "pending forever."
    )


def check_cpu_nodes(env: EnvironmentConfig, nodes: list[dict[str, Any]], apps: list[str]) -> None:
    """Refuse to deploy CPU-only work that no node of the cluster can take.

    Raises:
        ApplyError: Naming the deployments, the missing label and how to start such nodes.
    """
    why = unplaceable(env, nodes, apps)
    if why:
        raise ApplyError(why, fix=CPU_NODE_FIX)
