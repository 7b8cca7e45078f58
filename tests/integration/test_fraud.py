"""The fraud graph: its XGBoost classifier trained by its entry point (an MLflow xgboost model),
its gate passed locally and offline on Ray Data, and the same answers online over HTTP.

In the style ``graphops new`` writes for a new graph (node tests: tests/unit/test_fraud.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import requests

from graphops.graph import evaluate, load_graph
from graphops.registry import Registry
from graphops.runtime import read_rows, run_local

REQUEST = ("account_id", "amount", "merchant_category", "hour", "foreign")


def test_trains_passes_its_gate_offline_and_answers_online(
    repo_copy: Path, registry: Registry, serve_port: int
) -> None:
    from graphops.runtime.offline import run_offline
    from graphops.runtime.online import deploy, undeploy

    package = load_graph(repo_copy, "fraud")
    trainer = package.trainer()
    assert trainer is not None
    first = trainer(registry)
    assert trainer(registry).version == first.version  # deterministic: the version is reused
    files = registry.client.get_model_version("fraud", str(first.version))
    assert files.tags["graphops.digest"] == first.digest

    assert package.validation_dataset is not None and package.graph.validation is not None
    rows = read_rows(package.validation_dataset)
    local = run_local(package, registry, rows)
    (gate,) = local.metrics  # AUC >= 0.9 and better than the amount rule
    assert gate.passed and gate.reference is not None and gate.value > gate.reference, gate
    assert local.features is not None and local.features.missing == {"accounts": 20}

    offline = run_offline(package, registry, package.validation_dataset)
    np.testing.assert_allclose(
        np.asarray(offline.columns["fraud_probability"], float),
        np.asarray(local.columns["fraud_probability"], float),
        atol=1e-6,
    )
    (offline_gate,) = evaluate(package.graph.validation, offline.columns)
    assert offline_gate.passed and "> rule_scores (" in offline_gate.gate

    online = deploy(package, registry, port=serve_port, name="fraud")
    try:
        picked = [*range(20), *range(len(rows) - 3, len(rows))]  # the last: unknown accounts
        body = [{k: rows[i][k] for k in REQUEST} for i in picked]
        answer = requests.post(online.url, json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        for got, i in zip(answer.json(), picked, strict=True):
            want = local.responses[i]
            assert got["flagged"] == want["flagged"]
            np.testing.assert_allclose(
                got["fraud_probability"], want["fraud_probability"], atol=1e-6
            )
        assert any(r["flagged"] for r in local.responses) and not all(
            r["flagged"] for r in local.responses
        )
    finally:
        undeploy(online.name)
