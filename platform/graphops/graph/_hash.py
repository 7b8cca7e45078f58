"""Content hash of a graph package: stable across machines, checkouts and caches."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

_IGNORED_DIRS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".mypy_cache", ".ruff_cache"}
_IGNORED_SUFFIXES = {".pyc", ".pyo", ".swp"}
_IGNORED_NAMES = {".DS_Store", "Thumbs.db"}


def package_files(path: Path) -> Iterator[Path]:
    """Files that make up a graph package, sorted by relative POSIX path, caches excluded."""
    files = [
        f
        for f in path.rglob("*")
        if f.is_file()
        and not _IGNORED_DIRS.intersection(f.relative_to(path).parts)
        and f.suffix not in _IGNORED_SUFFIXES
        and f.name not in _IGNORED_NAMES
    ]
    yield from sorted(files, key=lambda f: f.relative_to(path).as_posix())


def content_hash(path: Path) -> str:
    """Return ``sha256:<hex>`` over the package's file names and contents.

    Text files are hashed with LF line endings so a Windows checkout (CRLF) hashes the same.
    """
    digest = hashlib.sha256()
    for f in package_files(path):
        data = f.read_bytes()
        if b"\0" not in data:  # text: normalise line endings
            data = data.replace(b"\r\n", b"\n")
        digest.update(f.relative_to(path).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(data).digest())
    return f"sha256:{digest.hexdigest()}"
