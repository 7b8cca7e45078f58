"""The digits graph end to end with the local runner, its model trained into a real MLflow store."""

from __future__ import annotations

import numpy as np
import pytest

from graphops import RunError
from graphops.graph import GraphPackage
from graphops.registry import Registry, ResolvedModel
from graphops.runtime import LocalRunner, read_rows, run_local, to_columns


def test_digits_passes_its_accuracy_gate(
    digits: GraphPackage, registry: Registry, champion: ResolvedModel
) -> None:
    assert digits.validation_dataset is not None
    rows = read_rows(digits.validation_dataset)
    result = run_local(digits, registry, rows)
    assert result.stats.rows == len(rows) == 360
    assert result.pins == {"logits": registry.resolve("models:/digits@champion")}
    [accuracy] = result.metrics
    assert accuracy.metric.name == "accuracy" and accuracy.passed
    assert 0.95 <= accuracy.value <= 1.0
    truth = np.array([r["digit"] for r in rows])
    assert accuracy.value == pytest.approx(float(np.mean(result.columns["label"] == truth)))
    assert set(result.responses[0]) == {"label", "confidence"}
    assert all(0 <= r["label"] <= 9 and 0 <= r["confidence"] <= 1 for r in result.responses)


def test_batch_size_does_not_change_answers(
    digits: GraphPackage, registry: Registry, champion: ResolvedModel
) -> None:
    assert digits.validation_dataset is not None
    columns, _ = to_columns(read_rows(digits.validation_dataset)[:50], digits.graph.request)
    models, _ = registry.load_models(digits.graph)
    whole = LocalRunner(digits.graph, models).run(columns, batch_size=256)
    sliced = LocalRunner(digits.graph, models).run(columns, batch_size=7)
    np.testing.assert_array_equal(whole["label"], sliced["label"])
    np.testing.assert_allclose(whole["confidence"], sliced["confidence"], rtol=1e-6)


def test_runner_requires_loaded_models(digits: GraphPackage) -> None:
    with pytest.raises(RunError, match="No loaded model for model node"):
        LocalRunner(digits.graph, {})
