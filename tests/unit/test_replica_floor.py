"""The environment's replica floor (policy.min_replicas) and the single points of failure it avoids."""

from __future__ import annotations

from typing import Any

import pytest

from graphops.controller.render import application, floored_override, versions
from graphops.controller.status import DeploymentChange, _single_replica
from graphops.environments import EnvironmentConfig, ReleaseEntry
from graphops.graph import Scaling
from graphops.planner import plan
from graphops.runtime.schema import AppArgs, DeploymentOverride, deployment_specs, floored
from tests.fixtures.graphs import valid
from tests.fixtures.locks import lock


@pytest.mark.parametrize(
    ("scaling", "floor", "expected"),
    [
        (Scaling(), 2, Scaling(replicas=2)),
        (Scaling(replicas=3), 2, Scaling(replicas=3)),
        (
            Scaling(replicas=1, min_replicas=1, max_replicas=4),
            2,
            Scaling(replicas=2, min_replicas=2, max_replicas=4),
        ),
        (
            Scaling(replicas=1, min_replicas=0, max_replicas=1),
            2,
            Scaling(replicas=2, min_replicas=2, max_replicas=2),
        ),
    ],
)
def test_floor_raises_replicas_and_autoscaling_bounds(
    scaling: Scaling, floor: int, expected: Scaling
) -> None:
    assert floored(scaling, floor) == expected


def test_every_deployment_of_an_application_gets_the_floor() -> None:
    args = AppArgs(graph="valid", repo=".", content_hash="sha256:x", min_replicas=2, colocate=False)

    specs = deployment_specs(plan(valid.graph), args)

    assert {s.name: s.scaling.replicas for s in specs} == {
        "ingress": 2,
        "logits": 2,
    }


def test_render_puts_the_floor_in_args_and_in_scaling_overrides() -> None:
    env = EnvironmentConfig(name="prod", policy={"min_replicas": 2})  # type: ignore[arg-type]
    entry = ReleaseEntry(
        lock=lock(),
        promoted_at="2026-12-01T00:00:00Z",  # type: ignore[arg-type]
        deployments={"logits": DeploymentOverride(replicas=1, max_ongoing_requests=8)},
    )

    app: dict[str, Any] = application(versions("valid", entry)[0], env)

    assert app["args"]["min_replicas"] == 2
    assert app["deployments"] == [
        # Always listed, split or not ({}): a split is then an in-place update, both ways.
        {"name": "ingress", "user_config": {}},
        {"name": "logits", "num_replicas": 2, "max_ongoing_requests": 8},
    ]
    assert floored_override(DeploymentOverride(replicas=1), 1) == DeploymentOverride(replicas=1)


def test_single_points_of_failure_are_flagged() -> None:
    live = {
        "deployments": {
            "ingress": {"replicas": [{"state": "RUNNING"}]},
            "logits": {"replicas": [{"state": "RUNNING"}, {"state": "RUNNING"}]},
            "post": {"replicas": [{"state": "RUNNING"}, {"state": "STARTING"}]},
        }
    }

    assert _single_replica(live) == ["ingress", "post"]
    assert DeploymentChange(app="a", deployment="d", change="new", replicas=1).single_point
    assert not DeploymentChange(app="a", deployment="d", change="new", replicas=2).single_point
    assert not DeploymentChange(app="a", deployment="d", change="removed").single_point


def test_placement_lists_the_node_of_each_running_replica() -> None:
    from graphops.controller.placement import node_ids as _placement

    live = {
        "deployments": {
            "logits": {
                "replicas": [
                    {"state": "RUNNING", "node_id": "gpu1"},
                    {"state": "RUNNING", "node_id": "gpu0"},
                ]
            },
            "ingress": {
                "replicas": [{"state": "RUNNING", "node_id": "cpu0"}, {"state": "STARTING"}]
            },
        }
    }

    assert _placement(live) == {"ingress": ["cpu0"], "logits": ["gpu0", "gpu1"]}
    assert _placement({}) == {}
