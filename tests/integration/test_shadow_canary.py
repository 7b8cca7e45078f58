"""Shadow-then-canary on real parts: a `ray start` cluster (token auth, loopback), a git repo, a
real MLflow store, load from a second process on the stable route.

The tests share one story and run in file order: digits 1.0.0 serves dev (blue/green, nothing to
compare yet); 1.0.1 answers every request with another label than the stable (its code shifts
the label by one), so while it is only mirrored the stable ingress counts a disagreement on every
compared request and the rollout is aborted at its mirrored step: it never answers a client (the
record's candidate arm has 0 requests), the stable answers everything, no client request fails,
git names 1.0.0 again and says why. 1.0.2 (the stable's code, its model in its own ingress) agrees on
everything, passes its mirrored step and the canary step, and takes the route alone. Timings are
never asserted; the policy's small numbers keep each step short.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import git
import pytest

from graphops.controller.apply import apply
from graphops.controller.render import app_name
from graphops.controller.rollout import RolloutAborted, load_records
from graphops.environments import load_release
from graphops.registry import Registry, ResolvedModel
from tests.integration.test_canary import (  # the canary story's helpers
    ingress_replicas,
    lock_at_head,
    mlflow_run,
    pin,
    ray_cluster,
    rollout_checkout,
    serving,
    stable_never_failed,
)
from tests.integration.test_gitops import Cluster, under_load

pytestmark = pytest.mark.usefixtures("champion")

POLICY = {
    "strategy": "shadow_canary",
    "shadow": {
        "percent": 100,  # every request copied: the mirrored step fills fast
        "min_seconds": 2,
        "min_requests": 8,
        "max_seconds": 120,
        "min_agreement": 0.9,
        "max_p99_ratio": 50,  # a p99 over a few requests on a shared machine is noise
    },
    "canary": {
        "steps": [50, 100],
        "min_seconds": 2,
        "min_requests": 8,
        "max_seconds": 120,
        "max_error_rate": 0.05,
        "max_p99_ratio": 50,
        "poll_seconds": 0.5,
    },
}
LABEL = '"label": probs.argmax(axis=1)'
SHIFTED = '"label": (probs.argmax(axis=1) + 1) % 10'  # every answer another digit


@pytest.fixture(scope="module")
def cluster(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """This module's own cluster, as the canary story starts its own."""
    with ray_cluster(registry, tmp_path_factory.mktemp("ray")) as running:
        yield running


@pytest.fixture(autouse=True)
def _token(cluster: Cluster, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHOPS_TEST_TOKEN", cluster.token)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)  # rollout records go here


@pytest.fixture(scope="module")
def repo(repo_copy: Path, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout with dev pointed at the test cluster and a shadow_canary policy."""
    root = tmp_path_factory.mktemp("shadow") / "repo"
    return rollout_checkout(root, repo_copy, cluster, POLICY, None)


def commit_code(repo: Path, old: str, new: str, message: str) -> None:
    code = repo / "graphs" / "digits" / "__init__.py"
    text = code.read_text()
    assert old in text
    code.write_text(text.replace(old, new))
    with git.Repo(repo) as r:
        r.git.add(A=True)
        r.index.commit(message)


def test_first_version_is_applied_blue_green(repo: Path, champion: ResolvedModel) -> None:
    lock = lock_at_head(repo, "1.0.0", champion)
    pin(repo, lock, "digits 1.0.0 in dev")
    result = apply(repo, "dev", timeout_s=300)
    assert result.started == [app_name("digits", lock)] and not result.rollouts


def test_a_candidate_that_disagrees_is_aborted_before_it_takes_any_live_traffic(
    repo: Path, cluster: Cluster, champion: ResolvedModel, registry: Registry, tmp_path: Path
) -> None:
    stable = load_release(repo, "dev").graphs["digits"].lock
    commit_code(repo, LABEL, SHIFTED, "digits 1.0.1: every label shifted by one")
    bad = lock_at_head(repo, "1.0.1", champion)
    pin(repo, bad, "digits 1.0.1 in dev")
    replicas = ingress_replicas(repo, app_name("digits", stable))
    with (
        under_load(f"{cluster.serve}/digits", stable.example, tmp_path) as load,
        pytest.raises(RolloutAborted, match="aborted at mirror 100%") as caught,
    ):
        apply(repo, "dev", timeout_s=300)
    assert "1.0.0 serves /digits alone again" in str(caught.value)
    record = load_records(repo, "dev")["digits"][0]
    assert (record.strategy, record.stable, record.candidate, record.outcome) == (
        "shadow_canary",
        "1.0.0",
        "1.0.1",
        "aborted",
    )
    assert record.policy["shadow"]["min_agreement"] == 0.9
    [step] = record.steps  # the mirrored step; no canary step was ever set
    assert (step.share, step.mirror, step.decision) == (0, 100, "abort")
    assert "disagreed with the stable" in step.reason, step.reason
    assert step.candidate.requests == 0  # it answered no client
    assert step.mirrored is not None and step.mirrored.compared >= 1
    assert step.mirrored.agreed == 0 and step.mirrored.errors == 0
    stable_never_failed(record)
    # The stable answered every request (the copies are of its answers; the two counts are
    # flushed by the replicas apart, so they may differ by a request or two at a reading).
    assert step.stable.requests >= step.mirrored.requests - 5
    assert load.failed == 0 and load.ok > 0  # not one client request failed
    assert serving(repo) == [app_name("digits", stable)]  # candidate removed
    assert ingress_replicas(repo, app_name("digits", stable)) == replicas  # in place throughout
    assert load_release(repo, "dev").graphs["digits"].lock.version == "1.0.0"  # git says so
    with git.Repo(repo) as r:
        assert r.head.commit.message.startswith("rollout: digits 1.0.1 aborted in dev, back to")
        assert not r.is_dirty()
    run = mlflow_run(registry, record)
    assert run.data.tags["graphops.strategy"] == "shadow_canary"
    mirrored = registry.client.get_metric_history(run.info.run_id, "mirrored.agreement")
    assert [m.value for m in mirrored] == [0.0]


def test_a_candidate_that_agrees_is_mirrored_then_walks_the_canary_steps(
    repo: Path, cluster: Cluster, champion: ResolvedModel, tmp_path: Path
) -> None:
    stable = load_release(repo, "dev").graphs["digits"].lock
    commit_code(repo, SHIFTED, LABEL, "digits: labels fixed (the stable's code)")
    good = lock_at_head(repo, "1.0.2", champion)
    pin(repo, good, "digits 1.0.2 in dev")
    with under_load(f"{cluster.serve}/digits", stable.example, tmp_path) as load:
        result = apply(repo, "dev", timeout_s=300)
    [rollout] = result.rollouts
    assert rollout.outcome == "promoted" and rollout.strategy == "shadow_canary"
    labels = [(s.label, s.decision) for s in rollout.steps]
    assert labels == [("mirror 100%", "advance"), ("50%", "advance")]
    mirrored, canary = rollout.steps
    assert mirrored.path == "via its ingress"  # its model runs in its own ingress (colocated)
    assert mirrored.mirrored is not None
    assert mirrored.mirrored.agreed == mirrored.mirrored.compared >= 8
    assert mirrored.candidate.requests == 0 and canary.candidate.requests >= 8
    assert load.failed == 0 and load.ok > 20
    assert serving(repo) == [app_name("digits", good)]
