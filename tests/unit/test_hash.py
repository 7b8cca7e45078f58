"""Content hash of a graph package: what is hashed, and what is not."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from graphops.graph import content_hash


@pytest.fixture
def package(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("graph = None\n")
    (root / "sub" / "data.json").write_text('{"a": 1}\n')
    (root / "weights.bin").write_bytes(b"\x00\x01\r\n\x02")
    return root


def test_hash_is_sha256_and_stable(package: Path) -> None:
    first = content_hash(package)

    assert re.fullmatch(r"sha256:[0-9a-f]{64}", first)
    assert content_hash(package) == first


def test_hash_changes_when_a_file_changes(package: Path) -> None:
    before = content_hash(package)
    (package / "sub" / "data.json").write_text('{"a": 2}\n')

    assert content_hash(package) != before


def test_hash_changes_when_a_file_is_renamed_or_added(package: Path) -> None:
    before = content_hash(package)
    (package / "sub" / "data.json").rename(package / "sub" / "other.json")
    renamed = content_hash(package)
    (package / "new.py").write_text("")

    assert renamed != before
    assert content_hash(package) not in (before, renamed)


def test_hash_ignores_caches(package: Path) -> None:
    before = content_hash(package)
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\x00compiled")
    (package / "sub" / "stale.pyc").write_bytes(b"\x00compiled")
    (package / ".DS_Store").write_bytes(b"\x00")

    assert content_hash(package) == before


def test_hash_treats_crlf_text_like_lf_but_not_binary(tmp_path: Path) -> None:
    lf, crlf = tmp_path / "lf", tmp_path / "crlf"
    for root, ending in ((lf, b"\n"), (crlf, b"\r\n")):
        root.mkdir()
        (root / "__init__.py").write_bytes(b"a = 1" + ending + b"b = 2" + ending)

    assert content_hash(lf) == content_hash(crlf)

    (lf / "blob.bin").write_bytes(b"\x00\n")
    (crlf / "blob.bin").write_bytes(b"\x00\r\n")
    assert content_hash(lf) != content_hash(crlf)
