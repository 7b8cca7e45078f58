"""Code packages: a graph's code at a commit, staged, hashed to Ray's URI, and uploaded.

A lock pins its graph's code as Ray's content-addressed package URI of ``graphs/<graph>/`` at the
lock's commit. `stage_code` writes those files from git (never from
the working tree), `package_uri` hashes them as Ray does, and `upload_packages` sends a cluster
the packages its config names, refusing code that no longer hashes to its lock.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from graphops._git import files_at
from graphops.errors import ApplyError, PromotionError
from graphops.graph import GRAPHS_DIR

if TYPE_CHECKING:
    from graphops.controller.cluster import Cluster


def package_uri(repo: Path, graph: str, commit: str) -> str:
    """Ray's content-addressed URI of ``graphs/<graph>/`` at ``commit``.

    The same files give the same ``gcs://_ray_pkg_<hash>.zip`` (Ray's own hashing), so the lock
    pins the code exactly and `apply` uploads just that when the environment ships packages.
    """
    from ray._private.runtime_env.packaging import get_uri_for_directory

    with tempfile.TemporaryDirectory(prefix="graphops-package-") as tmp:
        stage_code(repo, graph, commit, Path(tmp))
        return get_uri_for_directory(tmp, include_gitignore=False)


def stage_code(repo: Path, graph: str, commit: str, target: Path) -> Path:
    """Write ``graphs/<graph>/`` as of ``commit`` into ``target`` (``__pycache__`` left out).

    ``graphs/__init__.py`` is not part of the package (``graphs`` imports as a namespace
    package there). Every locked URI hashes exactly these files, so staging more would make
    every existing lock fail the check in `upload_packages`.

    Raises:
        PromotionError: ``graphs/<graph>`` does not exist at ``commit``.
    """
    files = files_at(repo, commit, f"{GRAPHS_DIR}/{graph}")
    if files is None:
        raise PromotionError(
            f"graphs/{graph} does not exist at commit {commit[:12]}.",
            fix="Commit the graph package first.",
            graph=graph,
        )
    for name, data in files.items():
        if "__pycache__" in name:
            continue
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return target


def upload_packages(cluster: Cluster, repo: Path, needed: dict[str, tuple[str, str]]) -> None:
    """Upload each package ``uri -> (graph, commit)``, checking the staged code hashes to it.

    Raises:
        ApplyError: The code of a graph at its commit does not hash to its locked URI.
    """
    for uri, (graph, commit) in sorted(needed.items()):
        if package_uri(repo, graph, commit) != uri:
            raise ApplyError(
                f"The code of {graph} at {commit[:12]} does not hash to its locked package {uri}.",
                fix="The lock was edited by hand or the commit rewritten: promote again.",
                graph=graph,
            )
        with tempfile.TemporaryDirectory(prefix="graphops-upload-") as tmp:
            cluster.upload(uri, stage_code(repo, graph, commit, Path(tmp)))
