"""Tests of the fraud graph: its nodes, the AUC metric, and a local run (no Ray, no MLflow).

In the style ``graphops new`` writes for a new graph. The local run uses a small booster trained
here and the embedded feature store over the committed Parquet table, so it checks the lookup,
the features and the response contract; the gate (AUC beating the amount rule with the trained
classifier) is checked by tests/integration/test_fraud.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xgboost

from graphops import Metric, load_graph
from graphops.errors import InputDataError
from graphops.features import open_store
from graphops.graph._metrics import BUILTIN_METRICS
from graphops.models.xgboost import XGBoostModel
from graphops.runtime import LocalRunner, read_rows, to_columns
from graphs.fraud import THRESHOLD, decision, features
from graphs.fraud.data import CATEGORIES, accounts, validation_rows
from graphs.fraud.preprocess import FEATURES, transaction_features
from graphs.fraud.train import features_for

REPO = Path(__file__).resolve().parents[2]


def test_decision_flags_at_the_threshold() -> None:
    out = decision(np.array([0.1, THRESHOLD, 0.9]))
    assert out["flagged"].tolist() == [False, True, True]


def test_features_is_the_training_preprocessing_under_its_node_name() -> None:
    assert (features.name, features.outputs, features.fn) == (
        "features",
        ("features",),
        transaction_features,
    )
    out = features(
        np.array([50.0, 5.0]),
        np.array([7, 0]),
        np.array([3, 15]),
        np.array([True, False]),
        *(np.array([20.0, 0.0], np.float32) for _ in range(4)),
    )
    assert out.shape == (2, FEATURES) and out.dtype == np.float32
    assert out[0, 2] == 1.0 and out[1, 2] == 0.0  # night flag
    assert out[0, -1] == 1.0 and out[1, -CATEGORIES] == 1.0  # one-hot categories
    assert np.isfinite(out).all()  # an unknown account's zero habit is floored


def test_auc_is_one_for_a_perfect_ranking_and_half_for_ties() -> None:
    auc = BUILTIN_METRICS["auc"]
    labels = np.array([0, 0, 1, 1])
    assert auc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert auc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert auc(np.full(4, 0.5), labels) == 0.5
    assert auc(np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9]]), labels) == 1.0
    with pytest.raises(InputDataError, match="both classes"):
        auc(np.array([0.1, 0.2]), np.array([1, 1]))
    assert Metric(name="auc", column="p").fn is None  # a built-in: no fn needed


def test_the_amount_rule_is_a_weak_baseline() -> None:
    rows = validation_rows()
    assert 0.03 < rows["is_fraud"].mean() < 0.15
    assert 0.6 < BUILTIN_METRICS["auc"](rows["rule_scores"], rows["is_fraud"]) < 0.9


def test_runs_locally_on_a_few_validation_rows() -> None:
    package = load_graph(REPO, "fraud")
    assert package.validation_dataset is not None
    rows = read_rows(package.validation_dataset)
    columns, passthrough = to_columns(rows[-30:], package.graph.request)  # new accounts included
    held_out = validation_rows()
    booster = xgboost.train(
        {"objective": "binary:logistic", "nthread": 1, "seed": 0},
        xgboost.DMatrix(features_for(accounts(), held_out), label=held_out["is_fraud"]),
        num_boost_round=5,
    )
    store = open_store(None, package.path)
    try:
        runner = LocalRunner(
            package.graph, {"fraud_probability": XGBoostModel(booster)}, features=store
        )
        out = runner.run(columns, batch_size=8)
    finally:
        store.close()
    expected = features_for(accounts(), {k: v[-30:] for k, v in held_out.items()})
    np.testing.assert_array_equal(out["features"], expected)  # store lookups == training's
    assert out["fraud_probability"].shape == (30,)
    assert set(passthrough) == {"is_fraud", "rule_scores"}
    responses = runner.respond(out)
    assert {type(r["flagged"]) for r in responses} == {bool}
    assert all(0.0 <= r["fraud_probability"] <= 1.0 for r in responses)
