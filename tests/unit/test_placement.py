"""CPU work stays off GPU nodes: the label selector rendered, and placement read and judged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ray.serve.schema import RayActorOptionsSchema

from graphops.controller.placement import (
    CPU_NODE_FIX,
    check_cpu_nodes,
    kinds,
    node_kind,
    replicas,
    unplaceable,
)
from graphops.controller.rayservice import rayservice
from graphops.environments import EnvironmentConfig, load_environment
from graphops.errors import ApplyError
from graphops.planner import plan
from graphops.runtime.schema import (
    CPU_NODE_SELECTOR,
    AppArgs,
    DeploymentOverride,
    deployment_specs,
)
from tests.fixtures.graphs import valid

REPO = Path(__file__).resolve().parents[2]


def _env(gpus: bool) -> EnvironmentConfig:
    groups: dict[str, Any] = {"cpu": {"cpus": 2}}
    if gpus:
        groups["gpu"] = {"cpus": 2, "gpus": 1}
    return EnvironmentConfig.model_validate(
        {"name": "prod", "cluster": {"gpus": gpus, "worker_groups": groups}}
    )


@pytest.mark.parametrize("colocate", [True, False])
def test_cpu_only_deployments_select_cpu_nodes_and_gpu_ones_do_not(colocate: bool) -> None:
    gpu = {"logits": DeploymentOverride(gpus=1)}
    args = AppArgs(graph="valid", cpu_nodes=True, colocate=colocate, deployments=gpu)
    specs = {s.name: s for s in deployment_specs(plan(valid.graph), args)}
    assert specs["ingress"].label_selector == CPU_NODE_SELECTOR
    actor = specs["ingress"].options()["ray_actor_options"]
    assert actor["label_selector"] == {"graphops.io/node-kind": "cpu"}
    RayActorOptionsSchema.model_validate(actor)  # what Ray's `serve deploy` accepts
    # a GPU model stage: no selector, its GPU decides
    assert specs["logits"].gpus and not specs["logits"].label_selector
    assert "label_selector" not in specs["logits"].options()["ray_actor_options"]
    # without a GPU the model stage is CPU-only work: in the ingress or apart, on CPU nodes
    no_gpu = args.model_copy(update={"deployments": {}, "colocate": colocate})
    cpu_only = {s.name: s for s in deployment_specs(plan(valid.graph), no_gpu)}
    assert all(s.label_selector == CPU_NODE_SELECTOR for s in cpu_only.values())


def test_without_gpus_nothing_is_pinned() -> None:
    for spec in deployment_specs(plan(valid.graph), AppArgs(graph="valid")):
        assert not spec.label_selector
        assert "label_selector" not in spec.options()["ray_actor_options"]


@pytest.mark.parametrize("gpus", [True, False])
def test_rendered_serve_config_carries_the_rule_only_where_the_cluster_has_gpus(
    gpus: bool,
) -> None:
    from ray.serve.schema import ServeDeploySchema

    from graphops.controller.render import application, versions
    from graphops.environments import ReleaseEntry
    from tests.fixtures.locks import lock

    entry = ReleaseEntry(lock=lock(), promoted_at="2026-12-01T00:00:00Z")  # type: ignore[arg-type]
    app = application(versions("valid", entry)[0], _env(gpus))
    assert app["args"].get("cpu_nodes", False) is gpus
    ServeDeploySchema.model_validate({"applications": [app]})
    # What the builder (Ray's own `serve deploy` runs it too) makes of those args:
    specs = deployment_specs(plan(valid.graph), AppArgs.model_validate(app["args"]))
    assert bool(specs[0].label_selector) is gpus


@pytest.mark.parametrize("gpus", [True, False])
def test_rayservice_labels_the_cpu_group_only_with_gpus(gpus: bool) -> None:
    manifest = rayservice(_env(gpus), {"http_options": {}, "applications": []})
    cluster = manifest["spec"]["rayClusterConfig"]
    groups = {g["groupName"]: g["rayStartParams"] for g in cluster["workerGroupSpecs"]}
    assert groups["cpu"] == ({"labels": "graphops.io/node-kind=cpu"} if gpus else {})
    if gpus:
        assert groups["gpu"] == {}
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_committed_prod_rayservice_labels_its_cpu_group() -> None:
    env = load_environment(REPO, "prod")
    assert env.cluster.gpus
    text = (REPO / "environments/prod/rayservice.yaml").read_text()
    assert "labels: graphops.io/node-kind=cpu" in text


NODES = [
    {"node_id": "h", "state": "ALIVE", "is_head_node": True, "resources_total": {}},
    {
        "node_id": "c",
        "state": "ALIVE",
        "resources_total": {"CPU": 2},
        "labels": {"graphops.io/node-kind": "cpu"},
    },
    {"node_id": "g", "state": "ALIVE", "resources_total": {"CPU": 1, "GPU": 1}, "labels": {}},
    {"node_id": "x", "state": "DEAD", "resources_total": {"CPU": 1}, "labels": CPU_NODE_SELECTOR},
]


def _deployment(gpus: float, *nodes: str) -> dict[str, Any]:
    return {
        "deployment_config": {"ray_actor_options": {"num_cpus": 0.1, "num_gpus": gpus}},
        "replicas": [{"state": "RUNNING", "node_id": n} for n in nodes]
        + [{"state": "STARTING", "node_id": "g"}],
    }


def test_replicas_name_their_node_kind_and_flag_cpu_work_on_a_gpu_node() -> None:
    assert [node_kind(n) for n in NODES] == ["head", "cpu", "gpu", "cpu"]
    assert kinds(NODES) == {"h": "head", "c": "cpu", "g": "gpu"}  # alive nodes only
    details = {"deployments": {"ingress": _deployment(0, "c", "g"), "logits": _deployment(1, "g")}}
    placed = replicas("app", details, kinds(NODES))
    assert [(r.deployment, r.node_kind, r.cpu_only, r.misplaced) for r in placed] == [
        ("app/ingress", "cpu", True, False),
        ("app/ingress", "gpu", True, True),  # the rule broken: flagged
        ("app/logits", "gpu", False, False),
    ]


def test_no_labelled_node_is_a_clear_error_naming_stage_label_and_fix() -> None:
    env = _env(True)
    assert unplaceable(env, NODES, ["digits-1"]) == ""
    unlabelled = [n for n in NODES if n["node_id"] != "c"]  # the dead labelled node counts not
    why = unplaceable(env, unlabelled, ["digits-1", "feed-2"])
    assert "digits-1/ingress, feed-2/ingress" in why and "graphops.io/node-kind=cpu" in why
    with pytest.raises(ApplyError) as raised:
        check_cpu_nodes(env, unlabelled, ["digits-1"])
    assert "ray start --labels graphops.io/node-kind=cpu" in str(raised.value)
    assert "ray start --labels" in CPU_NODE_FIX
    assert unplaceable(_env(False), unlabelled, ["digits-1"]) == ""  # one-node dev: no rule


def test_local_harness_labels_cpu_workers_only() -> None:
    from graphops.demo.nodes import cpu_labels

    assert cpu_labels(0) == "graphops.io/node-kind=cpu"
    assert cpu_labels(1) is None  # a (logical) GPU worker: never a CPU node
