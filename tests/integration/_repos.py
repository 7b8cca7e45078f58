"""A git repository of graphs/ and environments/ whose dev points at a cluster a test started."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import git
import yaml

from graphops.controller.render import render_all

REPO = Path(__file__).resolve().parents[2]


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
