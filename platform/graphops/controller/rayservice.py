"""The KubeRay ``RayService`` of an environment: its Serve config on a cluster `cluster:` describes.

Pure: `render` calls `rayservice` with the environment and its Serve config. The manifest holds
everything a pod needs (docs/kubernetes.md): the image, a head and worker groups (a GPU group
with ``nvidia.com/gpu`` limits where the environment has GPUs), requests equal to limits,
KubeRay's in-tree autoscaler between each group's bounds, token auth through ``authOptions``,
the MLflow settings from a Secret, Serve bound to ``0.0.0.0`` inside the pods, and the
environment's serving path (`graphops.runtime.serving.cluster_env`) in every container's ``env``:
Ray reads it when its processes start, so the head and every worker get the same.
"""

from __future__ import annotations

from typing import Any

from graphops.environments import EnvironmentConfig, PodGroup, WorkerGroup, dump_yaml
from graphops.runtime.schema import CPU_NODE_LABEL, CPU_NODE_VALUE
from graphops.runtime.serving import ServingConfig, cluster_env

RAY_VERSION = "2.60.0"
UPGRADE_STRATEGY = "NewCluster"
"""KubeRay's zero-downtime upgrade of ``rayClusterConfig`` changes (docs/kubernetes.md)."""
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
IMAGE_HAPROXY = "/usr/sbin/haproxy"
"""Where the image's haproxy is (Debian's package, Containerfile): the pods' binary unless
``serving.haproxy_binary`` names another; never looked up on the machine that renders."""

DEFAULT_CPU_GROUP = WorkerGroup(cpus=4, memory="8Gi", min_replicas=1, max_replicas=4)
DEFAULT_GPU_GROUP = WorkerGroup(cpus=4, memory="16Gi", gpus=1, min_replicas=1, max_replicas=2)


def worker_groups(env: EnvironmentConfig) -> dict[str, WorkerGroup]:
    """The environment's worker groups (default: a CPU group, and a GPU group with GPUs)."""
    if env.cluster.worker_groups:
        return dict(env.cluster.worker_groups)
    groups = {"cpu": DEFAULT_CPU_GROUP}
    if env.cluster.gpus:
        groups["gpu"] = DEFAULT_GPU_GROUP
    return groups


def start_params(env: EnvironmentConfig, group: WorkerGroup) -> dict[str, str]:
    """A worker group's ``rayStartParams``: a CPU group of a cluster with GPUs is labelled.

    CPU-only deployments and Ray Data CPU tasks select ``graphops.io/node-kind=cpu`` there
    (`graphops.runtime.schema.CPU_NODE_SELECTOR`), so only these pods hold them; GPU groups
    carry no label, and the head declares no CPUs (``num-cpus: "0"``), so it holds none either.
    """
    if env.cluster.gpus and not group.gpus:
        return {"labels": f"{CPU_NODE_LABEL}={CPU_NODE_VALUE}"}
    return {}


def resources(group: PodGroup) -> dict[str, Any]:
    """A container's requests and limits (equal: the pod is Guaranteed, never overcommitted)."""
    amounts: dict[str, Any] = {"cpu": f"{group.cpus:g}", "memory": group.memory}
    if group.gpus:
        amounts["nvidia.com/gpu"] = group.gpus
    requests = {k: v for k, v in amounts.items() if k != "nvidia.com/gpu"}
    return {"limits": amounts, "requests": requests}


def serving_env(serving: ServingConfig) -> list[dict[str, str]]:
    """The serving path's variables as a container's ``env`` items (sorted: a stable render).

    Each pod has its own /tmp and ports, so HAProxy keeps Ray's default files and ports there.
    """
    if serving.ingress == "haproxy" and serving.haproxy_binary is None:
        serving = serving.model_copy(update={"haproxy_binary": IMAGE_HAPROXY})
    return [{"name": k, "value": v} for k, v in sorted(cluster_env(serving).items())]


def container(
    env: EnvironmentConfig, name: str, group: PodGroup, ports: list[dict[str, Any]]
) -> dict[str, Any]:
    """One Ray container: the image, its resources, and the MLflow settings from a Secret."""
    out: dict[str, Any] = {
        "name": name,
        "image": env.cluster.image.reference,
        "resources": resources(group),
    }
    if env.cluster.mlflow_secret:
        out["envFrom"] = [{"secretRef": {"name": env.cluster.mlflow_secret}}]
    variables = serving_env(env.serving)
    if env.models.tracking_uri:
        variables.insert(0, {"name": "MLFLOW_TRACKING_URI", "value": env.models.tracking_uri})
    if variables:
        out["env"] = variables
    if ports:
        out["ports"] = ports
    return out


def pod(containers: list[dict[str, Any]], gpus: int) -> dict[str, Any]:
    """A pod template; GPU pods tolerate the GPU nodes' taint."""
    spec: dict[str, Any] = {"containers": containers}
    if gpus:
        spec["tolerations"] = [GPU_TOLERATION]
    return {"spec": spec}


def in_pods(config: dict[str, Any]) -> dict[str, Any]:
    """The Serve config as the pods run it: the proxy on every interface of the pod.

    A local ``http_host: 127.0.0.1`` would leave KubeRay's serve Service unable to reach it.
    """
    return config | {"http_options": config["http_options"] | {"host": "0.0.0.0"}}


def rayservice(env: EnvironmentConfig, config: dict[str, Any]) -> dict[str, Any]:
    """A KubeRay ``RayService`` (ray.io/v1) serving ``config`` on the environment's cluster."""
    head_ports = [
        {"containerPort": 6379, "name": "gcs-server"},
        {"containerPort": 8265, "name": "dashboard"},
        {"containerPort": env.http_port, "name": "serve"},
    ]
    head = env.cluster.head
    workers = []
    for name, group in sorted(worker_groups(env).items()):
        spec: dict[str, Any] = {
            "groupName": name,
            "replicas": group.min_replicas if group.replicas is None else group.replicas,
            "minReplicas": group.min_replicas,
            "maxReplicas": group.max_replicas,
            "rayStartParams": start_params(env, group),
            "template": pod(
                [
                    container(
                        env,
                        "ray-worker",
                        group,
                        [{"containerPort": env.http_port, "name": "serve"}],
                    )
                ],
                group.gpus,
            ),
        }
        workers.append(spec)
    auth: dict[str, Any] = {"mode": "token"}
    if env.cluster.token_secret:
        auth["secretName"] = env.cluster.token_secret
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": f"graphops-{env.name}", "labels": {"graphops/environment": env.name}},
        "spec": {
            "upgradeStrategy": {"type": UPGRADE_STRATEGY},
            "serveConfigV2": dump_yaml(in_pods(config)),
            "rayClusterConfig": {
                "rayVersion": RAY_VERSION,
                "enableInTreeAutoscaling": env.cluster.autoscaling,
                "authOptions": auth,
                "headGroupSpec": {
                    # no replica on the head: it runs the GCS, the dashboard and Serve's controller
                    # (no CPUs and no label: neither CPU-only nor GPU work can land there)
                    "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
                    "template": pod([container(env, "ray-head", head, head_ports)], head.gpus),
                },
                "workerGroupSpecs": workers,
            },
        },
    }
