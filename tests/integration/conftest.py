"""Integration fixtures: a real MLflow store (sqlite in a temp dir) with the digits model trained."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from graphops.graph import GraphPackage, load_graph
from graphops.registry import Registry, ResolvedModel

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _tracking_uri_untouched() -> Iterator[None]:
    """No test may leave ``MLFLOW_TRACKING_URI`` changed (``mlflow.set_tracking_uri`` sets it).

    Registries of their own (``Registry(tmp_path / ".graphops")``) read it: changed, they would
    share a store with the rest of the session, and a test's models would leak into others.
    """
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    after = os.environ.get("MLFLOW_TRACKING_URI")
    assert after == before, f"MLFLOW_TRACKING_URI changed from {before!r} to {after!r}"


@pytest.fixture(scope="session")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of this repository's graphs/ in a temp dir (so runs never touch the checkout)."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(REPO / "graphs", root / "graphs", ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A fresh MLflow tracking + registry store on sqlite."""
    return Registry(tmp_path_factory.mktemp("mlflow") / ".graphops")


@pytest.fixture(scope="session")
def registry_path(registry: Registry) -> Path:
    """The sqlite file of the session's MLflow store (for MLFLOW_TRACKING_URI in subprocesses)."""
    return Path(registry.tracking_uri.removeprefix("sqlite:///"))


@pytest.fixture(scope="session")
def digits(repo_copy: Path) -> GraphPackage:
    return load_graph(repo_copy, "digits")


@pytest.fixture(scope="session")
def champion(digits: GraphPackage, registry: Registry) -> ResolvedModel:
    """The digits model trained by its own entry point and registered as digits@champion."""
    trainer = digits.trainer()
    assert trainer is not None
    return trainer(registry)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[dict[str, float]]:
    """One real local Ray cluster for the whole test session, started as graphops starts its own
    (2 CPUs, loopback, no dashboard UI; never the `ray start` cluster of test_gitops)."""
    import ray

    from graphops.runtime.online import init_local

    init_local(2, logging_level="WARNING")
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def serve_port(ray_cluster: dict[str, float]) -> Iterator[int]:
    """Ray Serve on the session cluster, its HTTP proxy on a free loopback port."""
    from ray import serve

    from graphops._net import free_port
    from graphops.runtime.online import start_http

    port = start_http(free_port())
    try:
        yield port
    finally:
        serve.shutdown()
