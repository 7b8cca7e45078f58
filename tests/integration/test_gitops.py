"""GitOps end to end on real parts: a bare origin, clones for an engineer and for CI, a real Ray
cluster started with `ray start --head` (token auth, loopback), a real MLflow store.

The tests of this module share one story and run in file order: promote digits to dev and apply
it, refuse staging before the soak, survive a broken version, revert, race two promotions.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import git
import pytest
import requests
import yaml

from graphops.controller.apply import apply
from graphops.controller.promote import carry_experiment, promote
from graphops.controller.render import app_name, render
from graphops.controller.status import diff, rollout_peak, status
from graphops.environments import GraphLock, load_environment, load_release, write_release
from graphops.errors import ApplyError, PromotionError
from graphops.registry import Registry, ResolvedModel
from graphops.runtime.schema import DeploymentOverride
from graphops.validation import validate_graph
from tests.integration._clusters import SERVE, fresh_cluster, serve_url

pytestmark = pytest.mark.usefixtures("ray_cluster", "champion")

REPO = Path(__file__).resolve().parents[2]


LOAD = """
import json, sys, pathlib, requests
url, body, stop = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
ok = failed = 0
while not stop.exists():
    try:
        ok, failed = (ok + 1, failed) if requests.post(url, data=body, timeout=30).status_code == 200 else (ok, failed + 1)
    except requests.RequestException:
        failed += 1
print(ok, failed)
"""


class Counts:
    """What the load process counted: good answers and failures (anything but a 200)."""

    ok = failed = 0


@contextlib.contextmanager
def under_load(url: str, body: dict, tmp_path: Path) -> Iterator[Counts]:
    """Requests to ``url`` from a second process for as long as the block runs (loopback)."""
    stop_file = tmp_path / f"stop-{time.monotonic_ns()}"
    client = subprocess.Popen(
        [sys.executable, "-c", LOAD, url, json.dumps(body), str(stop_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    counts = Counts()
    try:
        yield counts
    finally:
        stop_file.touch()
        out, _ = client.communicate(timeout=60)
        counts.ok, counts.failed = map(int, out.split())


class Rollouts:
    """Failed/total of the rollouts under load, written to `ROLLOUTS` for docs/reliability.md."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, scenario: str, failed: int, ok: int) -> None:
        self.rows.append({"scenario": scenario, "failed": failed, "total": failed + ok})


ROLLOUTS = REPO / "benchmarks" / "results" / "rollouts.json"
rollouts = Rollouts()


@pytest.fixture(scope="module", autouse=True)
def _record_rollouts() -> Iterator[None]:
    yield
    if rollouts.rows:
        when = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        ROLLOUTS.write_text(json.dumps({"when": when, "rows": rollouts.rows}, indent=2) + "\n")


class Cluster:
    def __init__(self, dashboard: str, serve: str, token: str) -> None:
        self.dashboard, self.serve, self.token = dashboard, serve, token


@pytest.fixture(scope="module")
def cluster(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """`ray start --head --block` with token auth on loopback (graphops.demo.services, as the
    main job starts it); stopped by the test (its process group)."""
    # logical CPUs: two arms and a shadow fit
    with fresh_cluster("ray-test", tmp_path_factory.mktemp("ray"), registry.tracking_uri, 4) as ray:
        assert ray.token
        yield Cluster(ray.url, serve_url(ray), ray.token)


def environments(root: Path, cluster: Cluster) -> None:
    """The repository's environments with dev pointed at the test cluster."""
    shutil.copytree(REPO / "environments", root / "environments")
    for rendered in root.glob("environments/*/*.yaml"):
        if rendered.name in ("serve.yaml", "rayservice.yaml", "release.yaml"):
            rendered.unlink()
    dev = root / "environments" / "dev" / "environment.yaml"
    data = yaml.safe_load(dev.read_text())
    data["cluster"] |= {
        "dashboard": cluster.dashboard,
        "serve_url": cluster.serve,
        "token_env": "GRAPHOPS_TEST_TOKEN",
    }
    data["http_port"] = int(cluster.serve.rsplit(":", 1)[1])
    data["code"] |= {"store": f"file://{root.parent / 'packages'}"}  # not /var/tmp
    dev.write_text(yaml.safe_dump(data))
    # The test's MLflow store is local files: staging's nodes (this machine) can read them.
    staging = root / "environments" / "staging" / "environment.yaml"
    local = yaml.safe_load(staging.read_text()) | {"models": {"artifact_stores": ["file://"]}}
    staging.write_text(yaml.safe_dump(local))


@pytest.fixture(scope="module")
def origin(
    tmp_path_factory: pytest.TempPathFactory, repo_copy: Path, cluster: Cluster, registry: Registry
) -> Path:
    """A bare origin holding graphs/ and environments/, digits validated at its head."""
    bare = tmp_path_factory.mktemp("origin") / "graphs.git"
    git.Repo.init(bare, bare=True, initial_branch="main")
    seed = tmp_path_factory.mktemp("seed") / "repo"
    shutil.copytree(repo_copy, seed)
    environments(seed, cluster)
    with git.Repo.init(seed, initial_branch="main") as r:
        _identity(r, "seed")
        for rendered in render_all(seed):
            rendered.write()
        r.git.add(A=True)
        r.index.commit("graphs and environments")
        r.create_remote("origin", str(bare)).push("main")
    return bare


def render_all(root: Path) -> list:
    from graphops.controller.render import render_all as _render_all

    return _render_all(root)


def _identity(r: git.Repo, name: str) -> None:
    with r.config_writer() as config:
        config.set_value("user", "name", name).set_value("user", "email", f"{name}@example.com")


def clone(origin: Path, where: Path, name: str) -> Path:
    with git.Repo.clone_from(origin, where) as r:
        _identity(r, name)
    return where


def validated(repo: Path, registry: Registry, graph: str = "digits") -> str:
    commit = git.Repo(repo).head.commit.hexsha
    result = validate_graph(repo, graph, registry, commit=commit, parity=False)
    assert result.status == "passed", result.problems
    return result.run_id or ""


@pytest.fixture(autouse=True)
def _token(cluster: Cluster, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHOPS_TEST_TOKEN", cluster.token)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)  # apply verifies locks here


@pytest.fixture(scope="module")
def ci(origin: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clone(origin, tmp_path_factory.mktemp("ci") / "repo", "ci")


def pull(repo: Path) -> None:
    with git.Repo(repo) as r:
        r.remotes.origin.pull("main")


def ask(cluster: Cluster, example: dict) -> requests.Response:
    return requests.post(f"{cluster.serve}/digits", json=example, timeout=30)


def test_merge_promote_to_dev_apply_and_answer(
    ci: Path, cluster: Cluster, registry: Registry, champion: ResolvedModel
) -> None:
    run = validated(ci, registry)  # CI validated the merged commit
    result = promote(ci, "digits", "dev", registry, push="main")
    assert result.pushed == "main" and result.lock.validation_run == run
    assert result.lock.models["logits"].digest == champion.digest
    assert sorted(result.files) == [
        "environments/dev/rayservice.yaml",
        "environments/dev/release.yaml",
        "environments/dev/serve.yaml",
    ]
    pull(ci)
    assert load_release(ci, "dev").graphs["digits"].lock == result.lock
    assert not render(ci, "dev").stale()  # what was committed is what render gives

    changes = diff(ci, "dev")
    # dev has no GPUs: the model stage runs inside the ingress (serving.colocate), one deployment.
    assert {(c.deployment, c.change) for c in changes} == {("ingress", "new")}
    first = apply(ci, "dev", timeout_s=240)
    assert len(first.started) == 1 and not first.retired
    answer = ask(cluster, result.lock.example)
    assert answer.status_code == 200 and answer.json()["label"] == 7
    assert not apply(ci, "dev").changed  # idempotent
    release = load_release(ci, "dev")
    entry = release.graphs["digits"]
    scaled = entry.model_copy(update={"deployments": {"ingress": DeploymentOverride(replicas=2)}})
    write_release(ci, "dev", release.model_copy(update={"graphs": {"digits": scaled}}))
    render(ci, "dev").write()
    changes = {c.deployment: c for c in diff(ci, "dev")}
    # dev's applications carry no runtime_env (replicas fetch their code zip themselves), so
    # even the first scaling override is in place (see controller/status.py).
    assert (changes["ingress"].change, changes["ingress"].why) == ("in place", "num_replicas")
    assert changes["ingress"].cpus > 0 and set(changes) == {"ingress"}
    commit_all(ci, "digits: 2 ingress replicas")
    assert apply(ci, "dev", timeout_s=240).updated
    before = replicas(ci)
    release = load_release(ci, "dev")
    entry = release.graphs["digits"]
    more = entry.model_copy(update={"deployments": {"ingress": DeploymentOverride(replicas=3)}})
    write_release(ci, "dev", release.model_copy(update={"graphs": {"digits": more}}))
    render(ci, "dev").write()
    changes = {c.deployment: c for c in diff(ci, "dev")}
    assert (changes["ingress"].change, changes["ingress"].why) == ("in place", "num_replicas")
    commit_all(ci, "digits: 3 ingress replicas")
    scaled_up = apply(ci, "dev", timeout_s=240)
    assert scaled_up.updated and not scaled_up.started  # Serve's lightweight update
    after = replicas(ci)
    [app] = after
    assert before[app] < after[app] and len(after[app]) == 3  # one more, none restarted
    with git.Repo(ci) as r:
        r.git.revert("--no-edit", "HEAD~2..HEAD")  # back to no override
    apply(ci, "dev", timeout_s=240)
    [row] = status(ci, "dev")
    assert (row.live, row.drift, row.version) == ("RUNNING", False, "1.0.0")

    # Ray's own `serve deploy` takes the rendered file as it is.
    env = os.environ | {"RAY_AUTH_TOKEN": cluster.token, "RAY_AUTH_MODE": "token"}
    deployed = subprocess.run(
        [SERVE, "deploy", str(ci / "environments/dev/serve.yaml"), "--address", cluster.dashboard],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert deployed.returncode == 0, deployed.stderr
    assert ask(cluster, result.lock.example).status_code == 200


def test_hand_edited_or_stale_render_is_caught(ci: Path) -> None:
    serve_yaml = ci / "environments/dev/serve.yaml"
    original = serve_yaml.read_text()
    serve_yaml.write_text(original.replace("route_prefix: /digits", "route_prefix: /digitz"))
    stale = render(ci, "dev").stale()
    assert list(stale) == [serve_yaml]
    assert "-  route_prefix: /digitz" in stale[serve_yaml]
    assert "+  route_prefix: /digits" in stale[serve_yaml]
    serve_yaml.write_text(original)
    assert not render(ci, "dev").stale()


def test_staging_refused_before_the_soak_and_allowed_after(ci: Path, registry: Registry) -> None:
    promoted = load_release(ci, "dev").graphs["digits"].promoted_at
    with pytest.raises(
        PromotionError, match=r"gate soak: live in dev since .* of the 30 min required"
    ):
        promote(ci, "digits", "staging", registry, now=promoted + datetime.timedelta(minutes=5))
    assert "digits" not in load_release(ci, "staging").graphs  # nothing written
    result = promote(
        ci, "digits", "staging", registry, now=promoted + datetime.timedelta(minutes=31)
    )
    assert result.branch == "promote/staging/digits-1.0.0" and result.commit
    with git.Repo(ci) as r:
        assert r.active_branch.name == "main"  # the checkout is left as it was
        staged = r.commit(result.commit).tree / "environments/staging/release.yaml"
        assert "validation_run" in staged.data_stream.read().decode()


def recorded(registry: Registry, like: str | None, lock: GraphLock) -> GraphLock:
    """``lock`` naming a new passed validation record of exactly it (copied from run ``like``)."""
    record = registry.validation(like or "")
    tags = {
        "graphops.graph": record.graph,
        "graphops.version": lock.version,
        "graphops.content_hash": lock.content_hash,
        "graphops.commit": record.commit or "",
    }
    for node, pin in lock.models.items():
        tags[f"graphops.model.{node}"] = pin.uri
        tags[f"graphops.model.{node}.digest"] = pin.digest
    run = registry.record_validation(
        graph=record.graph,
        tags=tags,
        params={},
        metrics={},
        status="passed",
        artifacts=lambda _: {},
    )
    return lock.model_copy(update={"validation_run": run})


def test_a_broken_version_never_takes_the_stable_route(
    ci: Path, cluster: Cluster, champion: ResolvedModel, registry: Registry, tmp_path: Path
) -> None:
    release = load_release(ci, "dev")
    good = release.graphs["digits"]
    bad_models = {
        "logits": good.lock.models["logits"].model_copy(update={"digest": "sha256:" + "0" * 64})
    }
    bad = good.model_copy(
        update={"lock": good.lock.model_copy(update={"version": "1.0.1", "models": bad_models})}
    )
    # A record that passed exactly this lock (its artifacts changed after validation, say):
    # apply verifies the lock against it, so the failure is the replicas' digest check.
    bad = bad.model_copy(update={"lock": recorded(registry, good.lock.validation_run, bad.lock)})
    write_release(ci, "dev", release.model_copy(update={"graphs": {"digits": bad}}))
    render(ci, "dev").write()
    # A second process sends requests on the stable route for the whole apply.
    with (
        under_load(f"{cluster.serve}/digits", good.lock.example, tmp_path) as load,
        pytest.raises(ApplyError, match="previous state is restored") as caught,
    ):
        apply(ci, "dev", timeout_s=240)
    rollouts.add("broken version (weights' digest wrong) applied", load.failed, load.ok)
    assert "changed since they were pinned" in str(caught.value)
    assert load.failed == 0 and load.ok > 10
    [row] = [r for r in status(ci, "dev")]
    assert row.live in ("absent", "DELETING")  # git says 1.0.1 (its failed candidate is gone) ...
    with git.Repo(ci) as r:
        r.git.checkout("--", "environments")  # ... but the cluster still runs 1.0.0
    [row] = status(ci, "dev")
    assert row.live == "RUNNING" and ask(cluster, good.lock.example).status_code == 200


def test_a_new_version_then_a_revert_brings_the_old_one_back(
    ci: Path, cluster: Cluster, registry: Registry, tmp_path: Path
) -> None:
    example = load_release(ci, "dev").graphs["digits"].lock.example
    init = ci / "graphs/digits/__init__.py"
    init.write_text(init.read_text().replace('version="1.0.0"', 'version="1.1.0"'))
    with git.Repo(ci) as r:
        r.git.commit("-am", "digits 1.1.0")
        r.remotes.origin.push("main")
    validated(ci, registry)
    promote(ci, "digits", "dev", registry, push="main")
    pull(ci)
    swap = diff(ci, "dev")
    assert {c.change for c in swap} == {"new", "removed"}
    peak = rollout_peak(ci, "dev", swap)
    new_cpus = sum(c.cpus for c in swap if c.change == "new")
    # A version swap costs nothing once over (exactly 0, no float noise), but its blue/green
    # holds both versions for a while: the peak is the new version's, against live room.
    assert peak.after.cpus == 0.0 and peak.after.gpus == 0.0
    assert new_cpus > 0 and peak.extra.cpus == pytest.approx(new_cpus)
    assert peak.capacity is not None and peak.capacity.cpus >= 2  # the session cluster's nodes
    held = -sum(c.cpus for c in swap if c.change == "removed")  # the old version's replicas
    assert peak.in_use is not None and peak.in_use.cpus >= held - 1e-6
    assert peak.short == []  # it fits
    with under_load(f"{cluster.serve}/digits", example, tmp_path) as rollout:
        result = apply(ci, "dev", timeout_s=240)
    assert result.started and result.retired  # blue/green: new one started, old one retired
    health = requests.get(f"{cluster.serve}/digits/health", timeout=30).json()
    assert health["version"] == "1.1.0"
    with git.Repo(ci) as r:
        r.git.revert("--no-edit", "HEAD")  # roll back = revert the promotion commit
    with under_load(f"{cluster.serve}/digits", example, tmp_path) as revert:
        apply(ci, "dev", timeout_s=240)
    health = requests.get(f"{cluster.serve}/digits/health", timeout=30).json()
    assert health["version"] == "1.0.0"
    rollouts.add("good rollout 1.0.0 -> 1.1.0 (blue/green)", rollout.failed, rollout.ok)
    rollouts.add("`git revert` of that promotion applied", revert.failed, revert.ok)
    assert (rollout.failed, revert.failed) == (0, 0) and rollout.ok > 10 and revert.ok > 10


def test_moving_the_alias_changes_nothing_that_serves(
    ci: Path, cluster: Cluster, registry: Registry, champion: ResolvedModel
) -> None:
    import torch

    from graphs.digits.network import DigitsNet

    torch.manual_seed(7)
    moved = registry.register_torch(
        name="digits", module=DigitsNet(hidden=8), config={"hidden": 8}, alias="champion"
    )
    try:
        assert moved.version != champion.version
        assert not apply(ci, "dev").changed  # git pins the version: nothing to do
        health = requests.get(f"{cluster.serve}/digits/health", timeout=30).json()
        assert health["models"]["logits"]["uri"] == champion.uri
    finally:  # other modules of this session rely on one trained version
        registry.client.set_registered_model_alias("digits", "champion", str(champion.version))
        registry.client.delete_model_version("digits", str(moved.version))


def replicas(ci: Path) -> dict[str, set[str]]:
    """Application -> ids of its running replicas (a restart changes them)."""
    from graphops.controller.cluster import Cluster
    from graphops.environments import load_environment

    out: dict[str, set[str]] = {}
    for name, details in Cluster(load_environment(ci, "dev")).applications().items():
        for deployment in (details.get("deployments") or {}).values():
            ids = {r["replica_id"] for r in deployment.get("replicas") or []}
            out.setdefault(name, set()).update(ids)
    return out


def arms_of(answer: requests.Response) -> list[str]:
    return answer.headers["x-graphops-arm"].split(",")


def split(cluster: Cluster, keys: list[list[int]]) -> list[str]:
    """The arm of each key, from list requests of 500 rows (the header names each row's arm)."""
    out: list[str] = []
    for i in range(0, len(keys), 500):
        part = keys[i : i + 500]
        answer = requests.post(
            f"{cluster.serve}/digits", json=[{"pixels": k} for k in part], timeout=60
        )
        assert answer.status_code == 200, answer.text
        assert len(answer.json()) == len(part)
        got = arms_of(answer)
        out += got * len(part) if len(got) == 1 else got
    return out


def commit_all(ci: Path, message: str) -> None:
    with git.Repo(ci) as r:
        r.git.add(A=True)
        r.index.commit(message)


def test_an_experiment_splits_by_weight_sticks_and_reweighs_in_place(
    ci: Path, cluster: Cluster, registry: Registry
) -> None:
    import numpy as np

    from graphops.controller import experiment

    # HEAD holds the validated digits 1.1.0; dev pins 1.0.0 (the previous test reverted it).
    started = experiment.start(ci, "digits", "dev", registry, weight=10, sticky_key="pixels")
    assert started.branch == "experiment/dev/digits-1.1.0" and started.commit
    with git.Repo(ci) as r:
        r.git.merge(started.branch)  # review + merge of the experiment's pull request
    traffic = load_release(ci, "dev").graphs["digits"].traffic
    assert traffic is not None and traffic.weight == 90 and traffic.arms["1.1.0"].weight == 10
    result = apply(ci, "dev", timeout_s=240)
    control = app_name("digits", load_release(ci, "dev").graphs["digits"].lock)
    assert [a.split("-")[1] for a in result.started] == ["1.1.0"]
    assert result.updated == [control]  # its ingress splits /digits: no router, in place

    keys = np.random.default_rng(0).integers(0, 17, size=(10_000, 64)).tolist()
    first = split(cluster, keys)
    share = first.count("1.1.0") / len(first)
    assert abs(share - 0.10) <= 0.02, share
    again = split(cluster, keys[:500])  # the same keys land on the same arms, always
    assert again == first[:500]
    for key, arm in zip(keys[:20], first[:20], strict=True):
        single = requests.post(f"{cluster.serve}/digits", json={"pixels": key}, timeout=30)
        assert single.status_code == 200 and arms_of(single) == [arm]

    # A reviewed change of the weights: 90/10 -> 50/50, applied in place.
    before = replicas(ci)
    release = load_release(ci, "dev")
    entry = release.graphs["digits"]
    assert entry.traffic is not None
    arm = entry.traffic.arms["1.1.0"].model_copy(update={"weight": 50})
    reweighed = entry.traffic.model_copy(update={"weight": 50, "arms": {"1.1.0": arm}})
    write_release(
        ci,
        "dev",
        release.model_copy(
            update={"graphs": {"digits": entry.model_copy(update={"traffic": reweighed})}}
        ),
    )
    render(ci, "dev").write()
    commit_all(ci, "digits: 50/50")
    changes = {(c.app, c.change) for c in diff(ci, "dev") if c.change != "unchanged"}
    assert changes == {(control, "in place")}
    result = apply(ci, "dev", timeout_s=240)
    assert result.updated == [control] and not result.started and not result.retired
    assert replicas(ci) == before  # not one replica restarted
    second = split(cluster, keys)
    share = second.count("1.1.0") / len(second)
    assert abs(share - 0.50) <= 0.02, share
    assert all(b == "1.1.0" for a, b in zip(first, second, strict=True) if a == "1.1.0")

    report = experiment.report(ci, "digits", "dev")
    assert report.purpose == "experiment" and report.name == "digits-1.0.0-vs-1.1.0"
    by_version = {a.version: a.figures for a in report.arms}
    assert by_version["1.1.0"]["rows"] >= first.count("1.1.0") + second.count("1.1.0")
    assert by_version["1.0.0"]["errors"] == 0 and by_version["1.0.0"]["p50_ms"] > 0
    assert sum(by_version["1.0.0"]["output"].values()) == pytest.approx(1.0)
    assert [a.role for a in report.arms] == ["stable", "arm"]
    [row] = status(ci, "dev")
    assert row.live == "RUNNING" and row.traffic.startswith("1.0.0 50% · 1.1.0 50%")

    # Staging gets the experiment only once every arm is verified (soaked) in dev.
    promoted = load_release(ci, "dev").graphs["digits"]
    assert promoted.traffic is not None
    since = promoted.traffic.arms["1.1.0"].promoted_at
    staging = load_environment(ci, "staging")
    early = carry_experiment(
        ci, registry, staging, "digits", promoted, None, since + datetime.timedelta(minutes=5)
    )
    assert early[0] is None and "arm 1.1.0 has run in dev for 5.0 min of the 30" in early[1][0]
    now = max(since, promoted.promoted_at) + datetime.timedelta(minutes=31)
    late = promote(ci, "digits", "staging", registry, now=now, dry_run=True)
    assert late.traffic is not None and set(late.traffic.arms) == {"1.1.0"}


def test_shadow_traffic_never_changes_the_answers_then_conclude(
    ci: Path, cluster: Cluster, registry: Registry
) -> None:
    from graphops.controller import experiment

    with pytest.raises(PromotionError, match="runs an experiment in dev"):
        promote(ci, "digits", "dev", registry)
    concluded = experiment.conclude(ci, "digits", "dev", "1.0.0")
    with git.Repo(ci) as r:
        r.git.merge(concluded.branch)
    control = load_release(ci, "dev").graphs["digits"].lock
    stable = app_name("digits", control)
    before = replicas(ci)
    result = apply(ci, "dev", timeout_s=240)  # the split ends in place; the arm is retired
    assert result.updated == [stable] and [a.split("-")[1] for a in result.retired] == ["1.1.0"]
    assert replicas(ci)[stable] == before[stable]
    example = control.example
    bodies = [json.dumps(example)] * 20 + [
        json.dumps({"pixels": [1] * 10}),  # 422: too short
        json.dumps([example, {"pixels": [99] * 64}]),  # 422 in row 2
        "not json",
    ]
    alone = [requests.post(f"{cluster.serve}/digits", data=b, timeout=30) for b in bodies]
    assert all("x-graphops-arm" not in a.headers for a in alone)  # not split: no header

    with git.Repo(ci) as r:
        shadowed = experiment.start(ci, "digits", "dev", registry, shadow=100)
        r.git.merge(shadowed.branch)
    result = apply(ci, "dev", timeout_s=240)
    shadow = next(a for a in result.started if a.split("-")[1] == "1.1.0")
    assert result.updated == [stable] and replicas(ci)[stable] == before[stable]
    for body, was in zip(bodies, alone, strict=True):
        routed = requests.post(f"{cluster.serve}/digits", data=body, timeout=30)
        assert (routed.status_code, routed.json()) == (was.status_code, was.json())
        assert arms_of(routed) == ["1.0.0"]
    valid = 20  # what the control refuses is never copied
    deadline = time.time() + 30
    while time.time() < deadline:  # the shadow answers in the background
        report = experiment.report(ci, "digits", "dev")
        mirror = report.arm(shadow)
        if mirror is not None and mirror.figures["requests"] >= valid:
            break
        time.sleep(1)
    assert mirror is not None and mirror.role == "mirror" and mirror.version == "1.1.0"
    assert mirror.figures["requests"] >= valid and mirror.weight == 100
    assert mirror.figures["agreement"] == 1.0 and mirror.figures["compared"] >= valid

    final = experiment.conclude(ci, "digits", "dev", "1.0.0")
    with git.Repo(ci) as r:
        r.git.merge(final.branch)
    result = apply(ci, "dev", timeout_s=240)
    assert shadow in result.retired and result.updated == [stable]
    health = requests.get(f"{cluster.serve}/digits/health", timeout=30).json()
    assert health["version"] == "1.0.0" and "experiment" not in health


def test_concurrent_promotions_lose_nothing(
    origin: Path, tmp_path: Path, registry: Registry
) -> None:
    a = clone(origin, tmp_path / "a", "a")
    b = clone(origin, tmp_path / "b", "b")
    for repo, name in ((a, "digits_a"), (b, "digits_b")):  # two graphs merged one after the other
        pull(repo)
        shutil.copytree(repo / "graphs/digits", repo / "graphs" / name)
        init = repo / "graphs" / name / "__init__.py"
        init.write_text(init.read_text().replace('name="digits"', f'name="{name}"'))
        with git.Repo(repo) as r:
            r.git.add(A=True)
            r.index.commit(f"add {name}")
            r.remotes.origin.push("main")
    pull(a)
    for repo, name in ((a, "digits_a"), (b, "digits_b")):
        validated(repo, registry, name)
    # The origin also turns the first promotion push down once: the retry path always runs.
    hook = origin / "hooks" / "pre-receive"
    hook.write_text(
        '#!/bin/sh\nif [ ! -f "$GIT_DIR/declined-once" ]; then\n'
        '  touch "$GIT_DIR/declined-once"; echo "declined once" >&2; exit 1\nfi\n'
    )
    hook.chmod(0o755)
    # Two CI jobs at once: two processes, each `graphops promote --push main` in its own clone.
    graphops = str(Path(sys.executable).with_name("graphops"))
    env = {k: v for k, v in os.environ.items() if k != "GRAPHOPS_REPO"}
    env["MLFLOW_TRACKING_URI"] = registry.tracking_uri
    jobs = [
        subprocess.Popen(
            [graphops, "--repo", str(repo), "promote", name, "--to", "dev", "--push", "main"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for repo, name in ((a, "digits_a"), (b, "digits_b"))
    ]
    outputs = [job.communicate(timeout=300)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs
    assert all("Pushed to origin/main." in out for out in outputs)
    assert (origin / "declined-once").exists()
    final = clone(origin, tmp_path / "final", "final")
    graphs = load_release(final, "dev").graphs
    lost = {"digits_a", "digits_b"} - set(graphs)
    rollouts.add(
        "two racing `promote --push main` (one push declined once): updates lost",
        len(lost),
        2 - len(lost),
    )
    assert {"digits", "digits_a", "digits_b"} <= set(graphs)
    assert not render(final, "dev").stale()
    assert isinstance(graphs["digits_a"].lock, GraphLock)
