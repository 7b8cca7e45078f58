"""fraud: score a card transaction. account features -> features -> XGBoost (MLflow) -> decision."""

from __future__ import annotations

from typing import Annotated, TypedDict

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from graphops import (
    Batching,
    Feature,
    FeatureTable,
    Graph,
    Metric,
    Model,
    Resources,
    Validation,
    lookup,
    model,
    node,
)

from .data import CATEGORIES
from .preprocess import transaction_features

THRESHOLD = 0.5
"""Fraud probability at or above which a transaction is flagged for review."""


class Transaction(BaseModel):
    """A card transaction to score."""

    model_config = ConfigDict(extra="forbid")

    account_id: Annotated[int, Field(ge=0, description="The card account paying.")]
    amount: Annotated[float, Field(gt=0, description="Amount in the account's currency.")]
    merchant_category: Annotated[
        int, Field(ge=0, lt=CATEGORIES, description="Merchant category code, 0..7.")
    ]
    hour: Annotated[int, Field(ge=0, le=23, description="Local hour of the transaction.")]
    foreign: Annotated[bool, Field(description="Whether the merchant is abroad.")]


class FraudScore(BaseModel):
    """The transaction's fraud probability and whether it is flagged."""

    fraud_probability: Annotated[float, Field(description="Probability the transaction is fraud.")]
    flagged: Annotated[bool, Field(description=f"fraud_probability >= {THRESHOLD}.")]


ACCOUNTS = FeatureTable(
    name="accounts",
    key="account_id",
    source="features/accounts.parquet",
    features={
        "avg_amount": Feature(dtype="float32", default=0.0),
        "tx_per_day": Feature(dtype="float32", default=0.0),
        "age_days": Feature(dtype="float32", default=0.0),
        "chargebacks": Feature(dtype="float32", default=0.0),
    },
)

account_features = lookup(
    "account_features",
    table=ACCOUNTS,
    key="account_id",
    prefix="account_",
    timeout_ms=50,
    resources=Resources(cpus=0.25),
)

# The classifier's inputs, built by the very function training uses.
features = node(transaction_features, name="features", resources=Resources(cpus=0.25))


@model(
    "models:/fraud@champion",
    batching=Batching(max_batch_size=64, max_wait_ms=2),
    resources=Resources(cpus=0.5),
)
def fraud_probability(features: np.ndarray, model: Model) -> np.ndarray:
    """The XGBoost classifier's fraud probability per transaction, ``(rows,)``."""
    return model(features)


class Decision(TypedDict):
    """Output columns of `decision`."""

    flagged: np.ndarray


@node(resources=Resources(cpus=0.25))
def decision(fraud_probability: np.ndarray) -> Decision:
    """Flag transactions whose fraud probability reaches ``THRESHOLD``."""
    return {"flagged": np.asarray(fraud_probability) >= THRESHOLD}


graph = Graph(
    name="fraud",
    version="1.0.0",
    description="Card fraud scoring: account features, transaction features, XGBoost, decision.",
    request=Transaction,
    response=FraudScore,
    nodes=[account_features, features, fraud_probability, decision],
    validation=Validation(
        dataset="validation.parquet",
        label="is_fraud",
        metrics=[Metric(name="auc", column="fraud_probability", min=0.9, beats="rule_scores")],
        parity_tolerance=1e-5,
    ),
)
