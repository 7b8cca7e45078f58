"""Training entry point: fit an XGBoost classifier on the synthetic transactions, register `fraud@champion`.

Run it with `graphops train fraud`. Seeded and deterministic (one thread, fixed parameters):
re-running re-uses the registered version. The model is saved with MLflow's own xgboost flavor
(UBJSON booster), so the MLflow UI shows a normal XGBoost model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphops.graph._metrics import BUILTIN_METRICS
from graphops.registry import Registry, ResolvedModel
from graphs.fraud.data import ACCOUNTS, Accounts, accounts, training_rows, validation_rows
from graphs.fraud.preprocess import transaction_features

MODEL_NAME = "fraud"
ALIAS = "champion"
PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "auc",
    "max_depth": 4,
    "eta": 0.1,
    "nthread": 1,
    "seed": 0,
}
ROUNDS = 200


def features_for(table: Accounts, rows: dict[str, np.ndarray]) -> np.ndarray:
    """Classifier inputs for transaction ``rows``, as the graph builds them (unknown: defaults)."""
    ids = np.asarray(rows["account_id"])
    inside = ids < ACCOUNTS
    safe = np.where(inside, ids, 0)

    def account(values: np.ndarray) -> np.ndarray:
        return np.where(inside, values[safe], 0.0).astype(np.float32)

    return transaction_features(
        rows["amount"],
        rows["merchant_category"],
        rows["hour"],
        rows["foreign"],
        account(table.avg_amount),
        account(table.tx_per_day),
        account(table.age_days),
        account(table.chargebacks),
    )


def train(registry: Registry) -> ResolvedModel:
    """Train, measure AUC against the amount rule on the held-out split and register."""
    import xgboost

    table = accounts()
    rows = training_rows()
    booster = xgboost.train(
        PARAMS, xgboost.DMatrix(features_for(table, rows), label=rows["is_fraud"]), ROUNDS
    )
    held_out = validation_rows()
    auc = BUILTIN_METRICS["auc"](
        booster.inplace_predict(features_for(table, held_out)), held_out["is_fraud"]
    )
    rule = BUILTIN_METRICS["auc"](held_out["rule_scores"], held_out["is_fraud"])
    return registry.register_flavor(
        name=MODEL_NAME,
        flavor="xgboost",
        model=booster,
        alias=ALIAS,
        params={**PARAMS, "rounds": ROUNDS},
        metrics={"val_auc": auc, "rule_auc": rule},
        description=f"XGBoost ({ROUNDS} rounds, depth {PARAMS['max_depth']}), AUC {auc:.4f} vs rule {rule:.4f}",
        pip_requirements=[f"xgboost=={xgboost.__version__}"],
    )
