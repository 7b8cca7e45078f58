"""Deterministic train/validation split of scikit-learn's bundled digits (no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

VALIDATION_FILE = Path(__file__).with_name("validation.parquet")
SEED = 0


def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, x_val, y_train, y_val): 80/20, stratified, seeded; pixels are 0..16."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    return tuple(train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y))  # type: ignore[return-value]


def write_validation(path: Path = VALIDATION_FILE) -> Path:
    """Write the validation split as Parquet (columns ``pixels``: list of 64 floats, ``digit``: the truth)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, x_val, _, y_val = split()
    table = pa.table(
        {"pixels": [row.tolist() for row in x_val.astype(float)], "digit": y_val.astype("int64")}
    )
    pq.write_table(table, path)
    return path


if __name__ == "__main__":
    print(write_validation())
