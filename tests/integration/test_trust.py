"""Verify on apply and signed promotions, on real parts: a `ray start` cluster (token auth,
loopback), a bare origin with clones, MLflow on sqlite, SSH keys made by ssh-keygen.

dev requires signed commits (alice's key). The story runs in file order: a signed promotion
applies and serves; a hand-edited lock (signed, so that only the lock check can stop it) is
refused by `apply` and by one controller round with the cluster unchanged; the same change
unsigned is refused for its signature; an unreachable registry refuses rather than accepts.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest
import requests
import yaml

from graphops.controller.apply import apply
from graphops.controller.cluster import Cluster as ClusterClient
from graphops.controller.packaging import package_uri
from graphops.controller.promote import promote
from graphops.controller.reconciler import ControllerState, round_
from graphops.controller.render import render, render_all
from graphops.environments import load_environment, load_release, write_release
from graphops.errors import LockVerificationError, UnsignedCommitError
from graphops.graph import content_hash, manifest_of, read_package
from graphops.registry import Registry
from graphops.validation import validate_graph
from tests.integration._clusters import fresh_cluster, serve_url

pytestmark = pytest.mark.usefixtures("ray_cluster", "champion")
REPO = Path(__file__).resolve().parents[2]


class Served:
    def __init__(self, dashboard: str, serve: str, token: str) -> None:
        self.dashboard, self.serve, self.token = dashboard, serve, token


@pytest.fixture(scope="module")
def cluster(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with fresh_cluster(
        "ray-trust", tmp_path_factory.mktemp("ray"), registry.tracking_uri, num_cpus=4
    ) as service:
        assert service.token
        yield Served(service.url, serve_url(service), service.token)


@pytest.fixture(scope="module")
def alice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """alice's SSH signing key (ssh-keygen) and her allowed_signers line."""
    key = tmp_path_factory.mktemp("keys") / "alice"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    kind, blob = key.with_suffix(".pub").read_text().split()[:2]
    return key, f"alice@example.com {kind} {blob}"


def identity(r: git.Repo, name: str, key: Path | None = None) -> None:
    """Who commits in ``r``; with ``key``, every commit is SSH-signed (promote's too)."""
    with r.config_writer() as config:
        config.set_value("user", "name", name).set_value("user", "email", f"{name}@example.com")
        if key is not None:
            config.set_value("gpg", "format", "ssh").set_value("user", "signingkey", str(key))
            config.set_value("commit", "gpgsign", "true")


@pytest.fixture(scope="module")
def origin(
    tmp_path_factory: pytest.TempPathFactory,
    repo_copy: Path,
    cluster: Served,
    alice: tuple[Path, str],
) -> Path:
    """A bare origin: graphs and environments, dev on the cluster requiring alice's signature."""
    bare = tmp_path_factory.mktemp("origin") / "graphs.git"
    git.Repo.init(bare, bare=True, initial_branch="main")
    seed = tmp_path_factory.mktemp("seed") / "repo"
    shutil.copytree(repo_copy, seed)
    shutil.copytree(REPO / "environments", seed / "environments")
    for rendered in seed.glob("environments/*/*.yaml"):
        if rendered.name in ("serve.yaml", "rayservice.yaml", "release.yaml"):
            rendered.unlink()
    dev = seed / "environments/dev/environment.yaml"
    data: dict[str, Any] = yaml.safe_load(dev.read_text())
    data["cluster"] |= {
        "dashboard": cluster.dashboard,
        "serve_url": cluster.serve,
        "token_env": "GRAPHOPS_TRUST_TOKEN",
    }
    data["http_port"] = int(cluster.serve.rsplit(":", 1)[1])
    data["code"] |= {"store": f"file://{seed.parent / 'packages'}"}
    data["policy"] = (data.get("policy") or {}) | {
        "require_signed_commits": True,
        "allowed_signers": [alice[1]],
    }
    dev.write_text(yaml.safe_dump(data))
    with git.Repo.init(seed, initial_branch="main") as r:
        identity(r, "alice", alice[0])
        for rendered in render_all(seed):
            rendered.write()
        r.git.add(A=True)
        r.git.commit("-m", "graphs and environments; dev requires signed commits")
        r.create_remote("origin", str(bare)).push("main")
    return bare


@pytest.fixture(scope="module")
def ci(origin: Path, tmp_path_factory: pytest.TempPathFactory, alice: tuple[Path, str]) -> Path:
    """The release owner's clone: alice signs every commit."""
    where = tmp_path_factory.mktemp("ci") / "repo"
    with git.Repo.clone_from(origin, where) as r:
        identity(r, "alice", alice[0])
    return where


@pytest.fixture(autouse=True)
def _token(cluster: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHOPS_TRUST_TOKEN", cluster.token)


def live(ci: Path) -> dict[str, Any]:
    """Application name -> (status, deployed config) on dev's cluster."""
    apps = ClusterClient(load_environment(ci, "dev")).applications()
    return {n: (a.get("status"), a.get("deployed_app_config")) for n, a in apps.items()}


def test_a_signed_promotion_applies(ci: Path, cluster: Served, registry: Registry) -> None:
    commit = git.Repo(ci).head.commit.hexsha
    validation = validate_graph(ci, "digits", registry, commit=commit, parity=False)
    assert validation.status == "passed", validation.problems
    promoted = promote(ci, "digits", "dev", registry, push="main")
    with git.Repo(ci) as r:
        r.remotes.origin.pull("main")
        assert r.head.commit.gpgsig  # promote signed it: the checkout signs (commit.gpgsign)
    result = apply(ci, "dev", timeout_s=240, tracking_uri=registry.tracking_uri)
    assert len(result.started) == 1
    answer = requests.post(f"{cluster.serve}/digits", json=promoted.lock.example, timeout=30)
    assert answer.status_code == 200 and answer.json()["label"] == 7


def hand_edit(ci: Path) -> str:
    """Change digits' code (committed), then point dev's lock at it by hand: commit, content
    hash (and manifest), package and version edited, validation_run left on the run of the old
    code."""
    init = ci / "graphs/digits/__init__.py"
    init.write_text(init.read_text().replace('version="1.0.0"', 'version="1.0.1"'))
    with git.Repo(ci) as r:
        r.git.add(A=True)
        r.git.commit("-m", "digits: changed, never validated")
        code = r.head.commit.hexsha
    release = load_release(ci, "dev")
    entry = release.graphs["digits"]
    forged = entry.lock.model_copy(
        update={
            "version": "1.0.1",
            "commit": code,
            "content_hash": content_hash(ci / "graphs/digits"),
            "manifest": manifest_of(read_package(ci / "graphs/digits")),
            "package": package_uri(ci, "digits", code),
        }
    )
    entry = entry.model_copy(update={"lock": forged})
    write_release(ci, "dev", release.model_copy(update={"graphs": {"digits": entry}}))
    render(ci, "dev").write()
    return entry.lock.validation_run or ""


def test_a_hand_edited_lock_is_refused_by_apply_and_by_a_controller_round(
    ci: Path, registry: Registry, tmp_path: Path
) -> None:
    run = hand_edit(ci)
    with git.Repo(ci) as r:
        r.git.add(A=True)
        r.git.commit("-m", "dev: digits 1.0.1 by hand (signed, so only the lock check stops it)")
        r.remotes.origin.push("main")
    before = live(ci)
    with pytest.raises(LockVerificationError) as caught:
        apply(ci, "dev", timeout_s=240, tracking_uri=registry.tracking_uri)
    message = str(caught.value)
    assert message.startswith(
        "graph 'digits' (environments/dev/release.yaml): dev: "
        'Got "1.0.1" for graphs.digits.lock.version. '
        f"The lock's validation run {run} validated 1.0.0 (also content_hash: lock sha256:"
    )
    assert "Nothing was changed on the cluster." in message
    assert message.endswith(
        "Run `graphops promote digits --to dev`: it writes the lock from a passed validation "
        "record (never edit release.yaml by hand), then apply again."
    )
    assert live(ci) == before

    controller = tmp_path / "controller"
    git.Repo.clone_from(git.Repo(ci).remotes.origin.url, controller).close()
    state = round_(
        controller,
        "dev",
        "main",
        ControllerState(env="dev", branch="main"),
        heal=False,
        timeout_s=240,
        log=lambda _: None,
        tracking_uri=registry.tracking_uri,
    )
    assert 'Got "1.0.1" for graphs.digits.lock.version.' in state.last_error
    assert state.last_apply == ""  # refused: the round applied nothing
    assert live(ci) == before


def test_an_unsigned_change_is_refused_and_a_signed_one_applies(
    ci: Path, registry: Registry
) -> None:
    with git.Repo(ci) as r:
        r.git.reset("--hard", "HEAD~2")  # back to the signed promotion
        env_file = ci / "environments/dev/environment.yaml"
        env_file.write_text(env_file.read_text() + "# reviewed\n")
        r.git.add(A=True)
        r.git(c=["commit.gpgsign=false"]).commit("-m", "dev: a change nobody signed")
        unsigned = r.head.commit.hexsha
    before = live(ci)
    with pytest.raises(UnsignedCommitError) as caught:
        apply(ci, "dev", timeout_s=240, tracking_uri=registry.tracking_uri)
    assert str(caught.value).startswith(
        f'Got commit "{unsigned[:12]}" ("dev: a change nobody signed", by alice) for a change '
        "of environments/dev/ or environments/base/. Environment dev requires signed commits "
        "(policy.require_signed_commits), and git cannot verify this one against the signers "
        "allowed before it: it has no signature."
    )
    assert live(ci) == before
    with git.Repo(ci) as r:
        r.git.commit("--amend", "--no-edit", "-S")  # alice signs the same change
    assert not apply(ci, "dev", timeout_s=240, tracking_uri=registry.tracking_uri).changed


def test_an_unreachable_registry_refuses(
    ci: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    before = live(ci)
    with pytest.raises(LockVerificationError) as caught:
        apply(ci, "dev", timeout_s=240, tracking_uri="http://127.0.0.1:9")
    message = str(caught.value)
    assert "cannot verify the lock of digits 1.0.0: Could not read validation run" in message
    assert "from MLflow at http://127.0.0.1:9" in message
    assert "Check that the tracking store is reachable" in message
    assert live(ci) == before
