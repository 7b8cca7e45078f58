"""Content hash of a graph package: stable across machines, checkouts and caches.

The hash is a function of the package's *manifest* (relative path -> sha256 of each file), so a
lock can carry the manifest and a worker can name the very file that differs from it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path

_IGNORED_DIRS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".mypy_cache", ".ruff_cache"}
_IGNORED_SUFFIXES = {".pyc", ".pyo", ".swp"}
_IGNORED_NAMES = {".DS_Store", "Thumbs.db"}


def ignored(relative: str) -> bool:
    """Whether a file at ``relative`` (POSIX, inside a package) is a cache left by tools."""
    parts = relative.split("/")
    name = parts[-1]
    return (
        bool(_IGNORED_DIRS.intersection(parts[:-1]))
        or Path(name).suffix in _IGNORED_SUFFIXES
        or name in _IGNORED_NAMES
    )


def package_files(path: Path) -> Iterator[Path]:
    """Files that make up a graph package, sorted by relative POSIX path, caches excluded."""
    files = [
        f for f in path.rglob("*") if f.is_file() and not ignored(f.relative_to(path).as_posix())
    ]
    yield from sorted(files, key=lambda f: f.relative_to(path).as_posix())


def file_digest(data: bytes) -> str:
    """Hex sha256 of one file's bytes; text files with LF line endings (a CRLF checkout agrees)."""
    if b"\0" not in data:
        data = data.replace(b"\r\n", b"\n")
    return hashlib.sha256(data).hexdigest()


def manifest_of(files: Mapping[str, bytes]) -> dict[str, str]:
    """Relative path -> `file_digest`, sorted by path."""
    return {name: file_digest(files[name]) for name in sorted(files)}


def manifest_hash(manifest: Mapping[str, str]) -> str:
    """``sha256:<hex>`` over a manifest's paths and file digests (what `content_hash` returns)."""
    digest = hashlib.sha256()
    for name in sorted(manifest):
        digest.update(name.encode() + b"\0")
        digest.update(bytes.fromhex(manifest[name]))
    return f"sha256:{digest.hexdigest()}"


def read_package(path: Path) -> dict[str, bytes]:
    """Every file of the package at ``path`` (caches excluded), by relative POSIX path."""
    return {f.relative_to(path).as_posix(): f.read_bytes() for f in package_files(path)}


def content_hash(path: Path) -> str:
    """Return ``sha256:<hex>`` over the package's file names and contents."""
    return manifest_hash(manifest_of(read_package(path)))
