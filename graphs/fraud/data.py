"""Deterministic synthetic card accounts and transactions with a hidden fraud process.

Every account has a spending habit (typical amount, transactions a day), an age and a history of
chargebacks; a transaction is likelier fraud when its amount is far above the account's habit, at
night, abroad, in a risky merchant category, on a young account or one with chargebacks. The graph
sees the account features through the embedded feature store and the transaction in the request.

``python -m graphs.fraud.data`` rewrites the committed Parquet files (byte-identical: seeded
generation, fixed writer options).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent
ACCOUNTS_FILE = HERE / "features" / "accounts.parquet"
VALIDATION_FILE = HERE / "validation.parquet"
SEED = 11
ACCOUNTS = 2000
CATEGORIES = 8
"""Merchant categories 0..7; 5 (electronics), 6 (gift cards) and 7 (crypto) carry more fraud."""
TRAIN_ROWS = 20_000
VALIDATION_ROWS = 400
NEW_ACCOUNTS = 20
"""Validation transactions of accounts the feature table does not know (lookup defaults)."""
_CATEGORY_RISK = np.array([0.0, 0.0, 0.2, 0.1, 0.3, 1.0, 1.6, 1.8])


@dataclass(frozen=True)
class Accounts:
    """The account feature table (what the store serves)."""

    avg_amount: np.ndarray  # float32 (ACCOUNTS,): typical transaction amount
    tx_per_day: np.ndarray  # float32
    age_days: np.ndarray  # float32
    chargebacks: np.ndarray  # float32: chargebacks in the last year


def accounts() -> Accounts:
    """The account table, from ``SEED``."""
    rng = np.random.default_rng(SEED)
    return Accounts(
        avg_amount=rng.lognormal(3.5, 0.6, ACCOUNTS).astype(np.float32),
        tx_per_day=rng.gamma(2.0, 1.5, ACCOUNTS).astype(np.float32),
        age_days=rng.integers(1, 3650, ACCOUNTS).astype(np.float32),
        chargebacks=rng.poisson(0.3, ACCOUNTS).astype(np.float32),
    )


def transactions(
    table: Accounts, rows: int, seed: int, *, new_accounts: int = 0
) -> dict[str, np.ndarray]:
    """``rows`` transactions with their fraud label; the last ``new_accounts`` of unknown ids."""
    rng = np.random.default_rng(seed)
    known = rows - new_accounts
    ids = np.concatenate(
        [rng.integers(0, ACCOUNTS, known), ACCOUNTS + np.arange(new_accounts)]
    ).astype(np.int64)
    inside = ids < ACCOUNTS
    safe = np.where(inside, ids, 0)
    habit = np.where(inside, table.avg_amount[safe], 40.0)
    age = np.where(inside, table.age_days[safe], 1.0)
    chargebacks = np.where(inside, table.chargebacks[safe], 0.0)
    # Fraud is decided first; fraudulent transactions look different (larger, at night, abroad).
    base = -2.6 + 0.6 * chargebacks - 0.5 * np.log1p(age / 30.0)
    fraud = rng.random(rows) < 1.0 / (1.0 + np.exp(-base))
    fraud |= rng.random(rows) < 0.03
    ratio = np.where(fraud, rng.lognormal(0.6, 0.9, rows), rng.lognormal(0.0, 0.5, rows))
    amount = np.round(habit * ratio, 2)
    night = rng.random(rows) < np.where(fraud, 0.55, 0.12)
    hour = np.where(night, rng.integers(0, 6, rows), rng.integers(6, 24, rows))
    foreign = rng.random(rows) < np.where(fraud, 0.45, 0.06)
    weights = np.exp(_CATEGORY_RISK)
    risky = rng.choice(CATEGORIES, rows, p=weights / weights.sum())
    plain = rng.choice(CATEGORIES, rows, p=np.exp(-_CATEGORY_RISK) / np.exp(-_CATEGORY_RISK).sum())
    category = np.where(fraud, risky, plain)
    return {
        "account_id": ids,
        "amount": amount.astype(np.float64),
        "merchant_category": category.astype(np.int64),
        "hour": hour.astype(np.int64),
        "foreign": foreign,
        "is_fraud": fraud.astype(np.int64),
        # The rule a bank might start from: how far above the account's habit the amount is.
        "rule_scores": (amount / np.where(inside, habit, 40.0)).astype(np.float64),
    }


def training_rows() -> dict[str, np.ndarray]:
    """The training transactions (a separate seed from validation's)."""
    return transactions(accounts(), TRAIN_ROWS, SEED + 1, new_accounts=TRAIN_ROWS // 50)


def validation_rows() -> dict[str, np.ndarray]:
    """The held-out transactions, some of accounts the feature table does not know."""
    return transactions(accounts(), VALIDATION_ROWS, SEED + 2, new_accounts=NEW_ACCOUNTS)


def write_files() -> list[Path]:
    """Write the account table and the validation split as Parquet (deterministically)."""
    table = accounts()
    ACCOUNTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    tables = {
        ACCOUNTS_FILE: {
            "account_id": pa.array(np.arange(ACCOUNTS, dtype=np.int64)),
            "avg_amount": pa.array(table.avg_amount),
            "tx_per_day": pa.array(table.tx_per_day),
            "age_days": pa.array(table.age_days),
            "chargebacks": pa.array(table.chargebacks),
        },
        VALIDATION_FILE: {k: pa.array(v) for k, v in validation_rows().items()},
    }
    for path, columns in tables.items():
        pq.write_table(pa.table(columns), path, compression="zstd")
    return list(tables)


if __name__ == "__main__":
    for written in write_files():
        print(written, written.stat().st_size, "bytes")
