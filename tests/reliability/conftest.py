"""The reliability suite: real Ray, Serve, MLflow and git; load from a separate process.

Run with `nox -s reliability` (excluded from `nox -s tests`). Each scenario adds a row to
`benchmarks/results/reliability.json`, written when the session ends; docs/reliability.md
explains the scenarios and shows the table.
"""

from __future__ import annotations

import datetime
import json
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (  # noqa: F401  (fixtures, shared with the integration suite)
    champion,
    digits,
    ray_cluster,
    registry,
    registry_path,
    repo_copy,
    serve_port,
)

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "reliability.json"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.reliability)


class Rows:
    """The suite's results: one row per scenario."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, scenario: str, *, failed: int, total: int, **figures: Any) -> None:
        self.rows.append({"scenario": scenario, "failed": failed, "total": total, **figures})


@pytest.fixture(scope="session")
def rows() -> Iterator[Rows]:
    found = Rows()
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
