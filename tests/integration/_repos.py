"""A git repository of graphs/ and environments/ whose dev points at a cluster a test started."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import git
import yaml

from graphops.controller.render import render_all
from graphops.demo.nodes import LocalCluster

REPO = Path(__file__).resolve().parents[2]
GRAPHOPS = str(Path(sys.executable).with_name("graphops"))


def dev_repo(repo_copy: Path, root: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """Copy graphs and environments to ``root``, let ``edit`` change dev's environment.yaml,
    render every environment and commit it all on ``main``."""
    shutil.copytree(repo_copy, root)
    shutil.copytree(REPO / "environments", root / "environments")
    for rendered in root.glob("environments/*/*.yaml"):
        if rendered.name in ("serve.yaml", "rayservice.yaml", "release.yaml"):
            rendered.unlink()
    dev = root / "environments/dev/environment.yaml"
    data = yaml.safe_load(dev.read_text())
    edit(data)
    dev.write_text(yaml.safe_dump(data))
    with git.Repo.init(root, initial_branch="main") as r:
        with r.config_writer() as config:
            config.set_value("user", "name", "t").set_value("user", "email", "t@example.com")
        for rendered in render_all(root):
            rendered.write()
        r.git.add(A=True)
        r.index.commit("graphs and environments")
    return root


def multinode_repo(repo_copy: Path, root: Path, cluster: LocalCluster, **policy: Any) -> Path:
    """`dev_repo` whose dev is ``cluster`` (graphops.demo.nodes) with `gpus: true` and
    ``policy`` in its policy; the token is read from GRAPHOPS_MN_TOKEN."""

    def on_nodes(data: dict[str, Any]) -> None:
        data["cluster"] |= {
            "dashboard": cluster.head.url,
            "serve_url": f"http://127.0.0.1:{cluster.head.ports['serve']}",
            "token_env": "GRAPHOPS_MN_TOKEN",
            "gpus": True,
        }
        data["code"]["store"] = f"file://{root.parent / 'packages'}"
        data["http_port"] = cluster.head.ports["serve"]
        data["policy"] |= policy

    return dev_repo(repo_copy, root, on_nodes)


def multinode_env(cluster: LocalCluster, tracking_uri: str) -> dict[str, str]:
    """The environment of a `graphops` subprocess that works on ``cluster``."""
    env = {k: v for k, v in os.environ.items() if k != "GRAPHOPS_REPO"}
    return env | {
        "RAY_ADDRESS": cluster.address,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": cluster.token,
        "GRAPHOPS_MN_TOKEN": cluster.token,
        "MLFLOW_TRACKING_URI": tracking_uri,
    }


def validate_on(repo: Path, cluster: LocalCluster, tracking_uri: str, graph: str = "digits") -> str:
    """`graphops validate <graph> --no-parity --force` on ``cluster``; its output.

    ``--force``: a passed record of the same lock made by an earlier test (another repository,
    another commit) would otherwise be reused, and no Ray Data job would run on ``cluster``.
    """
    ran = subprocess.run(
        [GRAPHOPS, "--repo", str(repo), "validate", graph, "--no-parity", "--force"],
        env=multinode_env(cluster, tracking_uri),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-4000:]
    return ran.stdout
