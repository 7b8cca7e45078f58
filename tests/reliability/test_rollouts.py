"""Rollouts under load on the suite's serving path (`--ingress`, default HAProxy).

A `ray start` cluster of its own (`graphops.demo.services`, token auth, loopback, 4 logical
CPUs: two versions side by side) started on the suite's path, a git repository whose dev points
at it, digits 1.0.0 applied; then, under 20 requests/s on the stable route from a separate
process, `graphops.controller.apply` rolls out 1.0.1 blue/green and 1.0.2 by canary (5%, 50%,
100%). Each rollout retires the old version's application: on the fast paths its ingress replicas
drain (`ServingConfig.drain_s`) while HAProxy stops routing to them. No request may fail.

On the HAProxy path HAProxy learns a new route before the replicas do; `apply` takes the new
versions off their private routes before the switch (`graphops.controller.apply`), which
this suite proves: before that, a few requests got a 404 at the switch (docs/reliability.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from graphops.controller.apply import apply
from graphops.controller.render import app_name
from graphops.environments import load_release
from graphops.registry import Registry, ResolvedModel
from graphops.runtime.serving import ServingConfig
from tests.integration.test_canary import POLICY, lock_at_head, pin, rollout_checkout
from tests.integration.test_canary import serving as serving_apps
from tests.integration.test_gitops import Cluster
from tests.reliability._load import Load
from tests.reliability.conftest import Rows, own_cluster

pytestmark = pytest.mark.usefixtures("champion")

RPS = 20
LOAD_S = 110.0
"""Longest load of one rollout (stopped when apply returns and a few seconds more went by)."""
AFTER_S = 3.0
"""Seconds of load kept up after apply returned (the retired version drains meanwhile)."""


@pytest.fixture(scope="module")
def cluster(
    registry: Registry, serving: ServingConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """This module's own `ray start` cluster on the suite's serving path; stopped by its pid."""
    with own_cluster("ray-rollouts", registry, serving, tmp_path_factory) as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def _token(cluster: Cluster, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHOPS_TEST_TOKEN", cluster.token)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)  # rollout records go here


@pytest.fixture(scope="module")
def repo(repo_copy: Path, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout with dev pointed at this module's cluster, no validation required."""
    origin = tmp_path_factory.mktemp("origin") / "graphs.git"
    root = tmp_path_factory.mktemp("rollouts") / "repo"
    return rollout_checkout(root, repo_copy, cluster, None, origin)


def strategy(repo: Path, policy: dict) -> None:
    """Set dev's rollout policy (committed with the next `pin`)."""
    dev = repo / "environments" / "dev" / "environment.yaml"
    data = yaml.safe_load(dev.read_text())
    data["rollout"] = policy
    dev.write_text(yaml.safe_dump(data))


def rollout_under_load(
    repo: Path,
    cluster: Cluster,
    version: str,
    champion: ResolvedModel,
    rows: Rows,
    what: str,
) -> None:
    """Pin ``version`` of digits in dev and apply it under load; record and check the load."""
    stable = load_release(repo, "dev").graphs["digits"].lock
    lock = lock_at_head(repo, version, champion)
    pin(repo, lock, f"digits {version} in dev")
    body = json.dumps(stable.example).encode()
    load = Load(f"{cluster.serve}/digits", body, rps=RPS, seconds=LOAD_S, threads=64).start()
    time.sleep(2)  # the load runs before the rollout starts
    started = time.monotonic()
    result = apply(repo, "dev", timeout_s=300)
    seconds = time.monotonic() - started
    time.sleep(AFTER_S)
    seen = load.finish()
    rows.add(
        f"rollout under load: {what}, {RPS} req/s on the stable route",
        failed=seen.failed,
        total=seen.total,
        recovery_s=0.0,
        apply_s=round(seconds, 1),
        p50_ms=round(seen.percentile(0.5), 1),
        p99_ms=round(seen.percentile(0.99), 1),
        statuses=seen.statuses,
        failures=seen.failures[:10],
        samples=seen.samples,
    )
    assert seen.ok > 20
    assert serving_apps(repo) == [app_name("digits", lock)], result
    assert seen.failed == 0, (seen.statuses, seen.samples)


def test_first_version_is_applied(repo: Path, cluster: Cluster, champion: ResolvedModel) -> None:
    strategy(repo, {"strategy": "blue_green"})
    lock = lock_at_head(repo, "1.0.0", champion)
    pin(repo, lock, "digits 1.0.0 in dev")
    assert apply(repo, "dev", timeout_s=300).started == [app_name("digits", lock)]


def test_blue_green_under_load_loses_nothing(
    repo: Path, cluster: Cluster, champion: ResolvedModel, rows: Rows
) -> None:
    what = "blue/green 1.0.0 -> 1.0.1"
    rollout_under_load(repo, cluster, "1.0.1", champion, rows, what)


def test_canary_under_load_loses_nothing(
    repo: Path, cluster: Cluster, champion: ResolvedModel, rows: Rows
) -> None:
    strategy(repo, POLICY)
    what = "canary 5/50/100% 1.0.1 -> 1.0.2"
    rollout_under_load(repo, cluster, "1.0.2", champion, rows, what)
