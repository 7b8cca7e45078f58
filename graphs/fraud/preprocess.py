"""Preprocessing shared by the graph's node and training: one float32 row per transaction."""

from __future__ import annotations

import numpy as np

from .data import CATEGORIES

FEATURES = 9 + CATEGORIES
"""Columns of `transaction_features`' output."""


def transaction_features(
    amount: np.ndarray,
    merchant_category: np.ndarray,
    hour: np.ndarray,
    foreign: np.ndarray,
    account_avg_amount: np.ndarray,
    account_tx_per_day: np.ndarray,
    account_age_days: np.ndarray,
    account_chargebacks: np.ndarray,
) -> np.ndarray:
    """``(rows, FEATURES)`` float32 inputs of the classifier.

    The amount against the account's habit (an unknown account's habit is 0: the ratio uses a
    floor of 1), the hour as a night flag and on the circle, the merchant category one-hot.
    """
    amount = np.asarray(amount, np.float64)
    habit = np.maximum(np.asarray(account_avg_amount, np.float64), 1.0)
    hour = np.asarray(hour, np.float64)
    one_hot = np.eye(CATEGORIES)[
        np.clip(np.asarray(merchant_category, np.int64), 0, CATEGORIES - 1)
    ]
    columns = [
        np.log1p(amount),
        np.log(np.maximum(amount, 0.01) / habit),
        (hour < 6).astype(np.float64),
        np.sin(2 * np.pi * hour / 24),
        np.cos(2 * np.pi * hour / 24),
        np.asarray(foreign, np.float64),
        np.log1p(np.asarray(account_age_days, np.float64)),
        np.asarray(account_tx_per_day, np.float64),
        np.asarray(account_chargebacks, np.float64),
    ]
    return np.concatenate([np.stack(columns, axis=1), one_hot], axis=1).astype(np.float32)
