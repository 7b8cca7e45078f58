"""The feed_ranking graph passes its own gate locally with its ranker trained by its entry point.

In the style ``graphops new`` writes for a new graph (the node tests are in
tests/unit/test_feed_ranking.py).
"""

from __future__ import annotations

from pathlib import Path

from graphops.graph import load_graph
from graphops.registry import Registry
from graphops.runtime import read_rows, run_local


def test_passes_its_gate_locally(repo_copy: Path, registry: Registry) -> None:
    package = load_graph(repo_copy, "feed_ranking")
    trainer = package.trainer()
    assert trainer is not None
    trainer(registry)
    assert package.validation_dataset is not None
    result = run_local(package, registry, read_rows(package.validation_dataset))
    assert result.metrics and all(m.passed for m in result.metrics), result.metrics
    assert set(result.responses[0]) == {"scores", "top_items", "top_scores"}
    [ndcg] = result.metrics
    assert ndcg.metric.name == "ndcg_at_10" and ndcg.reference is not None
