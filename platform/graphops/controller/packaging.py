"""Code packages: a graph's code at a commit, staged, hashed to Ray's URI, and uploaded.

A lock pins its graph's code as Ray's content-addressed package URI of ``graphs/<graph>/`` at the
lock's commit. `stage_code` writes those files from git (never from
the working tree), `package_uri` hashes them as Ray does, and `upload_packages` sends a cluster
the packages its config names, refusing code that no longer hashes to its lock.

Environments that deliver code as a zip (``code.mode: uri``) get the same files as a
content-addressed archive ``<store>/<graph>-<package hash>.zip``: `build_archive` writes it
deterministically (stored, fixed timestamps), `publish_archive` puts it in a ``file://`` store
(or an outbox CI uploads to an object store), and `verify_archive` downloads it with Ray's own
downloader, as the cluster will, and refuses one that does not hold the locked code.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from graphops._git import files_at
from graphops.errors import ApplyError, PromotionError, TamperedCodeError
from graphops.graph import GRAPHS_DIR, LockedCode

OUTBOX = ".graphops/outbox"
"""Where promote leaves the zips of an object-store ``code.store`` for CI to upload."""
_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest timestamp: the archive is the same everywhere

if TYPE_CHECKING:
    from graphops.controller.cluster import Cluster
    from graphops.environments import GraphLock


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


def package_hash(package: str) -> str:
    """The hex of a lock's package URI ``gcs://_ray_pkg_<hex>.zip``."""
    return package.removeprefix("gcs://_ray_pkg_").removesuffix(".zip")


def archive_uri(store: str, graph: str, package: str) -> str:
    """The content-addressed zip of a graph's locked code in ``store``."""
    return f"{store}/{graph}-{package_hash(package)}.zip"


def build_archive(repo: Path, graph: str, commit: str, package: str, target: Path) -> Path:
    """Write the zip of ``graphs/<graph>/`` at ``commit`` to ``target`` (byte-identical each time).

    The files sit under one top-level folder, which Ray strips when it unpacks a remote
    working_dir, so the replica's working directory holds ``graphs/<graph>/``.

    Raises:
        PromotionError: The code at ``commit`` does not hash to ``package`` (a stale lock).
    """
    top = f"{graph}-{package_hash(package)}"
    with tempfile.TemporaryDirectory(prefix="graphops-archive-") as tmp:
        staged = stage_code(repo, graph, commit, Path(tmp))
        from ray._private.runtime_env.packaging import get_uri_for_directory

        if get_uri_for_directory(str(staged), include_gitignore=False) != package:
            raise PromotionError(
                f"The code of {graph} at {commit[:12]} does not hash to its locked package "
                f"{package}.",
                fix="The lock was edited by hand or the commit rewritten: promote again.",
                graph=graph,
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
            for path in sorted(p for p in staged.rglob("*") if p.is_file()):
                info = zipfile.ZipInfo(f"{top}/{path.relative_to(staged).as_posix()}", _EPOCH)
                info.external_attr = 0o644 << 16
                archive.writestr(info, path.read_bytes())
        os.replace(partial, target)  # a reader never sees half an archive
    return target


def local_path(uri: str) -> Path:
    """The path a ``file://`` URI names."""
    return Path(unquote(urlparse(uri).path))


def publish_archive(repo: Path, graph: str, commit: str, package: str, store: str) -> Path:
    """Publish the zip of a lock's code to ``store``; returns the file written.

    A ``file://`` store (a local or shared-filesystem cluster) is written here; for an object
    store the zip goes to ``<repo>/.graphops/outbox/`` with the store's layout, and CI uploads
    it (docs/environments.md). An archive already there is kept: its name is its content.
    """
    uri = archive_uri(store, graph, package)
    name = uri.rsplit("/", 1)[1]
    target = local_path(uri) if store.startswith("file://") else repo / OUTBOX / name
    if not target.is_file():
        build_archive(repo, graph, commit, package, target)
    return target


def verify_archive(uri: str, graph: str, lock: GraphLock, *, whole_repository: bool) -> None:
    """Download ``uri`` as a replica will (`graphops.runtime.code`) and check it holds the lock.

    A zip from ``code.store`` must hold exactly ``graphs/<graph>/`` as the lock's manifest lists
    it, and nothing else; a ``code.working_dir`` archive (a whole repository) must hold that
    folder. Replicas check the same again before importing anything.

    Raises:
        ApplyError: The archive cannot be read, or holds other code; naming graph, URI and file.
    """
    from graphops.runtime.code import check_archive

    locked = LockedCode(graph, lock.content_hash, lock.manifest)
    try:
        check_archive(uri, locked, whole_repository=whole_repository)
    except TamperedCodeError as exc:
        raise ApplyError(exc.what, fix=exc.fix, graph=graph) from exc
