"""Unit tests run without Ray: starting a cluster here is a bug, not a slow test."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest


@pytest.fixture(autouse=True)
def _forbid_ray_init(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray  # lazily: the graph model itself must not need Ray

    def refuse(*args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError("tests/unit must not start Ray; move the test to tests/integration")

    monkeypatch.setattr(ray, "init", refuse)


@pytest.fixture
def graphs_sandbox() -> Iterator[None]:
    """Undo what discovery does to the interpreter: `graphs.*` modules and sys.path entries."""
    saved_path = list(sys.path)
    yield
    sys.path[:] = saved_path
    for name in [m for m in sys.modules if m == "graphs" or m.startswith("graphs.")]:
        del sys.modules[name]


WriteGraph = Callable[[Path, str, str], Path]


@pytest.fixture
def write_graph(graphs_sandbox: None) -> WriteGraph:
    """Write ``repo/graphs/<name>/__init__.py`` with the given source; returns the package folder.

    ``graphs/`` gets an ``__init__.py`` as in the real repository layout.
    """

    def write(repo: Path, name: str, source: str) -> Path:
        package = repo / "graphs" / name
        package.mkdir(parents=True)
        (repo / "graphs" / "__init__.py").touch()
        (package / "__init__.py").write_text(source)
        return package

    return write
