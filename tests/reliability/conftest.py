"""The reliability suite: real Ray, Serve, MLflow and git; load from a separate process.

Run with `nox -s reliability` (excluded from `nox -s tests`). Each scenario adds a row to
`benchmarks/results/reliability.json`, written when the session ends; docs/reliability.md
explains the scenarios and shows the table.

Every cluster of the suite serves on one path, `--ingress` (default haproxy, the path dev,
staging and prod declare; `--ingress proxy` runs the same scenarios on Serve's proxy): the
session cluster (`ray_cluster`, overriding the integration suite's) and the clusters of their
own (`serving`). Each row names the path it ran on.
"""

from __future__ import annotations

import datetime
import json
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from graphops.registry import Registry
from graphops.runtime.serving import ServingConfig, usable
from tests.integration.conftest import (  # noqa: F401  (fixtures, shared with the integration suite)
    champion,
    digits,
    registry,
    registry_path,
    repo_copy,
    serve_port,
)

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "reliability.json"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--ingress",
        choices=("haproxy", "direct", "proxy"),
        default="haproxy",
        help="The serving path of every cluster of the reliability suite (default haproxy).",
    )


@pytest.fixture(scope="session")
def serving(request: pytest.FixtureRequest) -> ServingConfig:
    """The suite's serving path (`--ingress`); haproxy must be installed for it (nox installs it)."""
    declared = ServingConfig(ingress=request.config.getoption("--ingress"))
    chosen, why = usable(declared)
    assert why is None, why  # never measure another path than the one asked for
    return chosen


@pytest.fixture(scope="session")
def ray_cluster(serving: ServingConfig) -> Iterator[dict[str, float]]:
    """The session's local cluster (as the integration suite's: 2 CPUs, loopback, no dashboard
    UI), serving on the suite's path."""
    import ray

    from graphops.runtime.online import init_local

    init_local(2, serving=serving, logging_level="WARNING")
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.reliability)


class Rows:
    """The suite's results: one row per scenario, with the serving path it ran on."""

    def __init__(self, ingress: str) -> None:
        self.rows: list[dict[str, Any]] = []
        self.ingress = ingress

    def add(
        self, scenario: str, *, failed: int, total: int, ingress: str | None = None, **figures: Any
    ) -> None:
        """One row; ``ingress`` where the scenario's cluster serves on another path."""
        self.rows.append(
            {
                "scenario": scenario,
                "ingress": ingress or self.ingress,
                "failed": failed,
                "total": total,
                **figures,
            }
        )


@pytest.fixture(scope="session")
def rows(serving: ServingConfig) -> Iterator[Rows]:
    found = Rows(serving.ingress)
    yield found
    if found.rows:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(
            json.dumps(
                {
                    "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                    "machine": f"{platform.machine()}, {platform.python_version()}",
                    "rows": found.rows,
                },
                indent=2,
            )
            + "\n"
        )


@contextmanager
def own_cluster(
    name: str,
    store: Registry,
    serving: ServingConfig,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Any]:
    """A module's own `ray start` cluster (4 logical CPUs) on the suite's serving path, as the
    `Cluster` of tests/integration/test_gitops.py; stopped by its pid."""
    from tests.integration._clusters import fresh_cluster, serve_url
    from tests.integration.test_gitops import Cluster

    folder = tmp_path_factory.mktemp("ray")
    with fresh_cluster(name, folder, store.tracking_uri, 4, serving=serving) as ray:
        assert ray.token
        yield Cluster(ray.url, serve_url(ray), ray.token)
