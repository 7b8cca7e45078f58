"""Locked code is checked before any of it runs: tampered files never execute, not even once.

Each tampered file writes a marker when imported; every refusal asserts the marker is absent.
"""

from __future__ import annotations

import shutil
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from graphops.errors import TamperedCodeError
from graphops.graph import LockedCode, content_hash, load_locked, manifest_of, read_package
from graphops.runtime.code import check_archive, open_archive

VALID = Path(__file__).resolve().parents[1] / "fixtures" / "graphs" / "valid.py"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with graphs/valid (the valid fixture graph as a package with a data file)."""
    root = tmp_path / "repo"
    (root / "graphs" / "valid").mkdir(parents=True)
    shutil.copy(VALID, root / "graphs" / "valid" / "__init__.py")
    (root / "graphs" / "valid" / "helpers.py").write_text("SCALE = 2\n")
    (root / "graphs" / "valid" / "table.csv").write_text("a,b\n1,2\n")
    return root


@pytest.fixture
def locked(repo: Path) -> LockedCode:
    folder = repo / "graphs" / "valid"
    return LockedCode("valid", content_hash(folder), manifest_of(read_package(folder)))


@pytest.fixture(autouse=True)
def _forget_graphs() -> Iterator[None]:
    """No ``graphs`` package bound by an earlier test, none left for a later one."""

    def forget() -> None:
        for name in [m for m in sys.modules if m == "graphs" or m.startswith("graphs.")]:
            del sys.modules[name]

    forget()
    yield
    forget()


def marker_code(marker: Path) -> str:
    return f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"


def test_the_locked_code_loads_from_checked_bytes_with_its_files_beside_it(
    repo: Path, locked: LockedCode
) -> None:
    package = load_locked(repo, locked)
    assert package.graph.name == "valid" and package.content_hash == locked.content_hash
    module = sys.modules["graphs.valid"]
    assert Path(module.__file__ or "") == repo / "graphs" / "valid" / "__init__.py"
    helpers = __import__("graphs.valid.helpers", fromlist=["SCALE"])
    assert helpers.SCALE == 2
    assert not list(repo.rglob("__pycache__")), "no bytecode is written next to checked code"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("graphs/valid/helpers.py", "graphs/valid/helpers.py differs"),
        ("graphs/valid/evil.py", "graphs/valid/evil.py was added"),
        ("graphs/valid/__init__.py", "graphs/valid/__init__.py differs"),
    ],
)
def test_a_changed_or_added_file_is_refused_and_never_runs(
    repo: Path, locked: LockedCode, tmp_path: Path, change: str, says: str
) -> None:
    marker = tmp_path / "marker"
    path = repo / change
    path.write_text(marker_code(marker) + (path.read_text() if path.exists() else ""))
    with pytest.raises(TamperedCodeError) as caught:
        load_locked(repo, locked)
    message = str(caught.value)
    assert says in message and "Nothing of it was imported" in message
    assert locked.content_hash in message and content_hash(repo / "graphs" / "valid") in message
    assert not marker.exists()


def test_graphs_init_never_runs_and_unlocked_modules_cannot_be_imported(
    repo: Path, locked: LockedCode, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    (repo / "graphs" / "__init__.py").write_text(marker_code(marker))
    (repo / "graphs" / "valid" / "__pycache__").mkdir()
    load_locked(repo, locked)
    assert not marker.exists()
    (repo / "graphs" / "other.py").write_text(marker_code(marker))
    with pytest.raises(ModuleNotFoundError, match="not part of the locked code"):
        __import__("graphs.valid.missing")
    assert not marker.exists()


def test_a_lock_whose_manifest_does_not_hash_to_its_content_hash_is_refused(
    repo: Path, locked: LockedCode
) -> None:
    edited = LockedCode("valid", locked.content_hash, {**(locked.manifest or {}), "x.py": "0" * 64})
    with pytest.raises(TamperedCodeError, match="edited by hand"):
        load_locked(repo, edited)


def _zip(repo: Path, target: Path, extra: dict[str, str]) -> str:
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted((repo / "graphs").rglob("*")):
            if path.is_file():
                archive.write(path, f"top/{path.relative_to(repo).as_posix()}")
        for name, text in extra.items():
            archive.writestr(f"top/{name}", text)
    return f"file://{target}"


def test_an_archive_holding_anything_beside_the_graph_is_refused(
    repo: Path, locked: LockedCode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPHOPS_CODE_CACHE", str(tmp_path / "cache"))
    (repo / "graphs" / "__init__.py").unlink(missing_ok=True)
    good = _zip(repo, tmp_path / "good.zip", {})
    assert open_archive(good, locked).graph.name == "valid"
    marker = tmp_path / "marker"
    evil = {
        "sitecustomize.py": marker_code(marker),
        "graphops/__init__.py": marker_code(marker),
        "graphs/__init__.py": marker_code(marker),
    }
    bad = _zip(repo, tmp_path / "bad.zip", evil)
    with pytest.raises(TamperedCodeError) as caught:
        check_archive(bad, locked)
    message = str(caught.value)
    for name in evil:
        assert f"{name} was added" in message
    assert bad in message and not marker.exists()
    # A whole-repository archive (code.working_dir template) may hold more; only the graph is used.
    assert (
        check_archive(bad, locked, whole_repository=True).keys() == (locked.manifest or {}).keys()
    )


def test_an_archive_member_that_escapes_its_folder_is_refused(
    locked: LockedCode, tmp_path: Path
) -> None:
    target = tmp_path / "escape.zip"
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr("top/../../etc/evil.py", "x = 1\n")
    with pytest.raises(TamperedCodeError, match="not a plain relative file"):
        check_archive(f"file://{target}", locked)
