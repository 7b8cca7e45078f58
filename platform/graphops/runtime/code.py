"""A graph's code archive, fetched and checked by platform code before anything of it runs.

With ``code.mode: uri`` a Serve config names each version's zip in its application ``args``
(``code_uri``), not as Ray's ``runtime_env.working_dir``: Ray puts a working_dir first on every
worker's ``PYTHONPATH``, so any module in it (a ``sitecustomize.py``, a package shadowing
``graphops``) would run before a replica could check anything. Here the replica downloads the
zip itself with Ray's own downloader (every scheme Ray's runtime_env knows), reads its members
into memory, checks them against the lock (`graphops.graph.load_locked`) and only then writes
them to a per-node cache folder, where ``__file__`` points so a graph finds its data files.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from graphops.errors import TamperedCodeError
from graphops.graph import (
    GRAPHS_DIR,
    GraphPackage,
    LockedCode,
    check_code,
    load_locked,
    manifest_hash,
    manifest_of,
    read_package,
)

MAX_ARCHIVE_BYTES = 512 * 1024 * 1024
"""A code archive larger than this is refused before it is read (graph code is small)."""
CACHE_ENV = "GRAPHOPS_CODE_CACHE"
"""Folder for unpacked, checked archives (default: ``<tmp>/graphops-code``)."""


def archive_members(uri: str) -> dict[str, bytes]:
    """Every file of the zip at ``uri``, by path, its single top-level folder removed (as Ray does).

    Raises:
        TamperedCodeError: The zip cannot be downloaded or read, is too large, or has a member
            that is not a plain relative path (absolute, ``..``, a link).
    """
    from ray._private.runtime_env.protocol import ProtocolsProvider

    with tempfile.TemporaryDirectory(prefix="graphops-fetch-") as tmp:
        target = Path(tmp) / "code.zip"
        try:
            ProtocolsProvider.download_remote_uri(uri.split("://", 1)[0], uri, str(target))
            if target.stat().st_size > MAX_ARCHIVE_BYTES:
                raise ValueError(f"{target.stat().st_size} bytes, over {MAX_ARCHIVE_BYTES}")
            data = target.read_bytes()
        except Exception as exc:
            raise TamperedCodeError(
                f"The code archive {uri} cannot be downloaded here: {exc}",
                fix="Publish it (`graphops promote` writes file:// stores; CI uploads the "
                ".graphops/outbox/ of object stores) or fix code.store.",
            ) from exc
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
            for info in infos:
                name = info.filename
                if (
                    name.startswith("/")
                    or ".." in name.split("/")
                    or (info.external_attr >> 28) == 0o12
                ):
                    raise ValueError(f"member {name!r} is not a plain relative file")
            members = {i.filename: archive.read(i) for i in infos}
    except (zipfile.BadZipFile, ValueError) as exc:
        raise TamperedCodeError(
            f"The code archive {uri} is not a valid graph archive: {exc}.",
            fix="Put back the archive `graphops promote` published for the lock.",
        ) from exc
    tops = {name.split("/", 1)[0] for name in members}
    if len(tops) == 1 and all("/" in name for name in members):
        members = {name.split("/", 1)[1]: data for name, data in members.items()}
    return members


def check_archive(
    uri: str, locked: LockedCode, *, whole_repository: bool = False
) -> dict[str, bytes]:
    """Download the zip at ``uri`` and check it holds exactly the locked code; nothing is run.

    What a replica does first (`open_archive`), and what `graphops apply` does before it deploys.
    Returns the files of ``graphs/<graph>/``.

    Args:
        uri: The archive (``file://``, ``https://``, ``s3://``, ``gs://`` ...).
        locked: The lock's content hash and manifest.
        whole_repository: The zip holds a whole repository (``code.working_dir`` templates):
            only ``graphs/<graph>/`` is checked and used. Otherwise the zip holds that folder
            and nothing else, and any other member is refused as added.

    Raises:
        TamperedCodeError: The archive cannot be read or differs from the lock.
    """
    members = archive_members(uri)
    prefix = f"{GRAPHS_DIR}/{locked.graph}/"
    files = {n[len(prefix) :]: d for n, d in members.items() if n.startswith(prefix)}
    outside = [] if whole_repository else sorted(n for n in members if not n.startswith(prefix))
    check_code(files, locked, source=uri, outside=outside)
    return files


def open_archive(uri: str, locked: LockedCode, *, whole_repository: bool = False) -> GraphPackage:
    """The locked graph from the zip at ``uri``, checked before any of it is imported.

    The zip is checked (`check_archive`), written to a per-node cache folder, and the graph is
    imported from the checked bytes (`graphops.graph.load_locked`).

    Raises:
        TamperedCodeError: The archive differs from the lock; nothing of it was imported.
    """
    files = check_archive(uri, locked, whole_repository=whole_repository)
    root = _unpacked(locked.graph, locked.content_hash, files)
    return load_locked(root, locked, files, source=uri)


def _unpacked(graph: str, digest: str, files: dict[str, bytes]) -> Path:
    """A cache folder holding ``graphs/<graph>/`` with exactly ``files`` (written once per node)."""
    cache = Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "graphops-code")
    root = cache / f"{graph}-{digest.removeprefix('sha256:')[:24]}"
    folder = root / GRAPHS_DIR / graph
    if folder.is_dir() and manifest_hash(manifest_of(read_package(folder))) == digest:
        return root
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{graph}-", dir=cache))
    for name, data in files.items():
        path = staging / GRAPHS_DIR / graph / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    shutil.rmtree(root, ignore_errors=True)  # a stale or partial copy
    try:
        os.replace(staging, root)
    except OSError:  # another replica on this node won the race with the same files
        shutil.rmtree(staging, ignore_errors=True)
    return root
