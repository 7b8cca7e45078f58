"""The digits graph passes its own gate locally with its model trained by its own entry point.

In the style ``graphops new`` writes for a new graph (the node tests are in tests/unit/test_digits.py).
"""

from __future__ import annotations

from graphops.graph import GraphPackage
from graphops.registry import Registry, ResolvedModel
from graphops.runtime import read_rows, run_local


def test_passes_its_gate_locally(
    digits: GraphPackage, registry: Registry, champion: ResolvedModel
) -> None:
    assert digits.validation_dataset is not None
    result = run_local(digits, registry, read_rows(digits.validation_dataset))
    assert result.metrics and all(m.passed for m in result.metrics), result.metrics
    assert set(result.responses[0]) == {"label", "confidence"}
