"""The pull-based controller without Ray: following origin with real git, and a failed round."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import git
import pytest
import yaml

from graphops._net import free_port
from graphops.controller.reconciler import ControllerState, pull, round_, state_path
from graphops.errors import GraphOpsError

REPO = Path(__file__).resolve().parents[2]


def _commit(repo: Path, name: str, text: str) -> str:
    (repo / name).write_text(text)
    with git.Repo(repo) as r:
        r.git.add(A=True)
        return r.index.commit(f"{name}: {text}").hexsha


def _push(repo: Path) -> None:
    with git.Repo(repo) as r:
        r.remotes.origin.push("main")


def _head(repo: Path) -> str:
    with git.Repo(repo) as r:
        return r.head.commit.hexsha


def _clone(origin: Path, where: Path) -> Path:
    with git.Repo.clone_from(origin, where) as r, r.config_writer() as config:
        config.set_value("user", "name", "t").set_value("user", "email", "t@example.com")
    return where


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    bare = tmp_path / "origin.git"
    git.Repo.init(bare, bare=True, initial_branch="main")
    seed = tmp_path / "seed"
    shutil.copytree(REPO / "environments", seed / "environments")
    dev = seed / "environments" / "dev" / "environment.yaml"
    data = yaml.safe_load(dev.read_text())
    # A port nothing listens on: never someone's cluster.
    data["cluster"]["dashboard"] = f"http://127.0.0.1:{free_port()}"
    dev.write_text(yaml.safe_dump(data))
    with git.Repo.init(seed, initial_branch="main") as r:
        with r.config_writer() as config:
            config.set_value("user", "name", "seed").set_value("user", "email", "s@example.com")
        r.git.add(A=True)
        r.index.commit("environments")
        r.create_remote("origin", str(bare)).push("main")
    return bare


def test_pull_follows_origin_and_refuses_a_diverged_checkout(origin: Path, tmp_path: Path) -> None:
    mine, theirs = _clone(origin, tmp_path / "mine"), _clone(origin, tmp_path / "theirs")
    assert pull(mine, "main") is None  # nothing new
    pushed = _commit(theirs, "a.txt", "1")
    _push(theirs)
    assert pull(mine, "main") == pushed
    assert _head(mine) == pushed
    _commit(mine, "b.txt", "local")
    _commit(theirs, "a.txt", "2")
    _push(theirs)
    with pytest.raises(GraphOpsError, match="has diverged from origin/main"):
        pull(mine, "main")


def test_a_round_that_cannot_reach_the_cluster_is_reported_in_the_state_file(
    origin: Path, tmp_path: Path
) -> None:
    mine = _clone(origin, tmp_path / "mine")
    state = ControllerState(env="dev", branch="main")
    round_(mine, "dev", "main", state, heal=False, timeout_s=5, log=lambda _: None)
    written = json.loads(state_path(mine, "dev").read_text())
    assert written["rounds"] == 1 and "unreachable" in written["last_error"]
    assert written["commit"] == _head(mine)
