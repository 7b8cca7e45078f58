"""Locked graph code, checked before any of it runs, then imported from the checked bytes.

A worker (Serve replica, Ray Data actor, the local runner of a locked version) is given a graph's
files from a working_dir, an archive or an image. `check_code` hashes the bytes it read with
platform code only (plain strings out of `graphops.graph._hash`, never an object the graph could
define) and compares them with the lock's manifest. Only then does `install` put a meta-path
finder in front of Python's own that serves ``graphs.<graph>`` and its modules **from those same
bytes**: nothing of the graph is imported from disk, no bytecode cache is read or written, a
module the lock does not hold cannot be imported, and ``graphs/__init__.py`` never runs (the
``graphs`` package is an empty module made here). Files on disk are still where ``__file__``
points, so a graph reads its data files as usual.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from graphops.errors import TamperedCodeError
from graphops.graph._hash import manifest_hash, manifest_of

GRAPHS_PACKAGE = "graphs"


@dataclass(frozen=True)
class LockedCode:
    """What a graph's code must be: the lock's content hash and, for newer locks, its manifest."""

    graph: str
    content_hash: str
    manifest: Mapping[str, str] | None = None
    """Path inside ``graphs/<graph>/`` -> sha256 hex of the file (`graphops.graph._hash`)."""


def check_code(
    files: Mapping[str, bytes],
    locked: LockedCode,
    *,
    source: str,
    outside: Sequence[str] = (),
) -> str:
    """Compare a graph's files, as bytes, with its lock; return their content hash.

    Args:
        files: Every file of ``graphs/<graph>/`` the worker has, by path inside that folder.
        locked: The lock's content hash and manifest.
        source: Where the files came from (archive URI or folder), for the message.
        outside: Files the source holds outside ``graphs/<graph>/`` that must not be there
            (an archive of one graph holds nothing else): each is reported as added.

    Raises:
        TamperedCodeError: The files differ from the lock (names each file added, changed or
            missing, and both digests); nothing of them was imported.
    """
    actual = manifest_of(files)
    digest = manifest_hash(actual)
    if locked.manifest is not None and manifest_hash(locked.manifest) != locked.content_hash:
        raise TamperedCodeError(
            f"The lock's file list hashes to {manifest_hash(locked.manifest)[:19]}, not to its "
            f"content hash {locked.content_hash[:19]}: the lock was edited by hand.",
            fix=f"Lock the graph again with `graphops promote {locked.graph}`.",
            graph=locked.graph,
        )
    if digest == locked.content_hash and not outside:
        return digest
    where = f"{GRAPHS_PACKAGE}/{locked.graph}/"
    problems = [f"{name} was added" for name in outside]
    if locked.manifest is not None:
        expected = locked.manifest
        problems += [f"{where}{n} was added" for n in actual if n not in expected]
        problems += [
            f"{where}{n} differs" for n in actual if n in expected and actual[n] != expected[n]
        ]
        problems += [f"{where}{n} is missing" for n in expected if n not in actual]
    detail = "; ".join(problems) or "its files differ (the lock predates per-file lists)"
    digests = (
        f"Expected {locked.content_hash}, found {digest}"
        if digest != locked.content_hash
        else f"The files of {where} match the lock ({digest}); nothing else may be there"
    )
    raise TamperedCodeError(
        f"The code of {locked.graph} in {source} is not the locked code: {detail}. {digests}. "
        "Nothing of it was imported",
        fix="Put back the archive or files of the locked commit (`graphops promote` publishes "
        "them; a content-addressed archive is never rewritten), or apply the lock of this code.",
        graph=locked.graph,
    )


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``graphs`` and the installed graphs' modules from checked bytes."""

    def __init__(self) -> None:
        self.trees: dict[str, tuple[Path, dict[str, bytes]]] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == GRAPHS_PACKAGE:
            if not self.trees:
                return None
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        parts = fullname.split(".")
        if parts[0] != GRAPHS_PACKAGE or len(parts) < 2 or parts[1] not in self.trees:
            return None
        folder, files = self.trees[parts[1]]
        inner = "/".join(parts[2:])
        for name, package in ((f"{inner}/__init__.py".lstrip("/"), True), (f"{inner}.py", False)):
            if name in files:
                spec = importlib.machinery.ModuleSpec(
                    fullname, self, origin=str(folder / name), is_package=package
                )
                spec.has_location = True
                return spec
        raise ModuleNotFoundError(
            f"{fullname} is not part of the locked code of graph '{parts[1]}' (only its own "
            "checked files are importable).",
            name=fullname,
        )

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        spec = module.__spec__
        assert spec is not None
        if spec.name == GRAPHS_PACKAGE:
            module.__doc__ = "Graph packages, each checked against its lock (graphops)."
            return
        graph = spec.name.split(".")[1]
        folder, files = self.trees[graph]
        assert spec.origin is not None
        relative = Path(spec.origin).relative_to(folder).as_posix()
        code = compile(files[relative], spec.origin, "exec", dont_inherit=True)
        exec(code, module.__dict__)  # the bytes were checked against the lock

    def get_source(self, fullname: str) -> str | None:
        """The checked source of a module (tracebacks and ``inspect`` read it)."""
        spec = self.find_spec(fullname, None)
        if spec is None or spec.origin is None or fullname == GRAPHS_PACKAGE:
            return None
        folder, files = self.trees[fullname.split(".")[1]]
        return files[Path(spec.origin).relative_to(folder).as_posix()].decode()


_FINDER = _Finder()


def install(graph: str, folder: Path, files: Mapping[str, bytes]) -> None:
    """Serve ``graphs.<graph>`` from ``files`` (checked by `check_code`), ``__file__`` in ``folder``.

    Modules of the graph imported before are dropped, so the next import runs the checked code.
    """
    _evict(graph)
    _FINDER.trees[graph] = (folder, {n: bytes(d) for n, d in files.items() if n.endswith(".py")})
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def forget(graph: str) -> None:
    """Stop serving ``graphs.<graph>`` from checked bytes (an author's checkout loads it instead)."""
    if _FINDER.trees.pop(graph, None) is not None:
        _evict(graph)


def _evict(graph: str) -> None:
    prefix = f"{GRAPHS_PACKAGE}.{graph}"
    for name in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
        del sys.modules[name]
