"""`graphops new` end to end: the default template, as generated, passes real validation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from graphops.graph import load_graph
from graphops.registry import Registry
from graphops.scaffold import DEFAULT_TEMPLATE, scaffold
from graphops.validation import validate_graph

pytestmark = pytest.mark.usefixtures("ray_cluster")


def test_default_template_validates_as_generated(
    tmp_path: Path, repo_copy: Path, registry: Registry
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(repo_copy, repo)
    scaffold(repo, "fresh_graph", DEFAULT_TEMPLATE)
    # What `graphops validate fresh_graph --train-missing` does first: run the new train.py.
    trainer = load_graph(repo, "fresh_graph").trainer()
    assert trainer is not None
    pinned = trainer(registry)
    assert pinned.uri == "models:/fresh_graph/1"

    result = validate_graph(repo, "fresh_graph", registry, commit="scaffold", parity=True)

    assert result.status == "passed", result.problems
    assert result.models == {"logits": pinned.uri}
    [gate] = result.gates
    assert (gate.metric, gate.column, gate.gate, gate.passed) == (
        "accuracy",
        "label",
        ">= 0.85",
        True,
    )
    assert result.rows == 300
    assert result.parity is not None and result.parity.passed
    assert result.parity.rows == 300 and result.parity.mismatches == 0
    assert registry.client.get_run(result.run_id).data.tags["graphops.status"] == "passed"


def test_text_template_validates_as_generated(
    tmp_path: Path, repo_copy: Path, registry: Registry
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(repo_copy, repo)
    scaffold(repo, "fresh_text", "text")
    trainer = load_graph(repo, "fresh_text").trainer()
    assert trainer is not None
    pinned = trainer(registry)
    assert trainer(registry).uri == pinned.uri  # seeded: the same files, the same version

    result = validate_graph(repo, "fresh_text", registry, commit="scaffold", parity=True)

    assert result.status == "passed", result.problems
    assert result.models == {"logits": pinned.uri}
    [gate] = result.gates
    assert (gate.metric, gate.column, gate.passed) == ("accuracy", "label", True)
    assert result.rows == 300
    assert result.parity is not None and result.parity.passed and result.parity.mismatches == 0


def test_tabular_template_validates_as_generated(
    tmp_path: Path, repo_copy: Path, registry: Registry
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(repo_copy, repo)
    scaffold(repo, "fresh_tabular", "tabular")
    trainer = load_graph(repo, "fresh_tabular").trainer()
    assert trainer is not None
    pinned = trainer(registry)  # an MLflow xgboost model, registered by register_flavor
    assert trainer(registry).version == pinned.version  # seeded, one thread: the version reused

    result = validate_graph(repo, "fresh_tabular", registry, commit="scaffold", parity=False)

    assert result.status == "passed", result.problems
    assert result.models == {"probability": pinned.uri}
    [gate] = result.gates
    assert (gate.metric, gate.column, gate.passed) == ("auc", "probability", True)
    assert gate.gate.startswith(">= 0.85 and > rule_scores (")
    assert result.rows == 300
