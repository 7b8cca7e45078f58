"""Column helpers for graph code: pure numpy, the same on every runner."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from graphops.graph._node import Batch


def dense_columns(batch: Mapping[str, Any]) -> Batch:
    """Stack list columns whose rows all have the same shape into one n-D array.

    Ray Data hands a list column (``list[float]`` per row) over as a 1-D object array whose
    entries are arrays or lists. When every row has the same shape, that column becomes a regular
    ``(rows, *shape)`` array (each row's own dtype, as `np.stack` gives it); ragged columns, empty
    ones and every other column (including values that are no numpy array) are returned as they
    are. A column that is already dense is left untouched, so calling it twice is harmless.

    Args:
        batch: Column name -> column, e.g. the batch a node or a metric receives.

    Returns:
        A new dict with the same keys, list columns densified where possible.

    Example:
        >>> ragged = np.empty(2, dtype=object)
        >>> ragged[:] = [np.array([1.0, 2.0]), np.array([3.0, 4.0])]
        >>> dense_columns({"scores": ragged})["scores"].shape
        (2, 2)
    """
    out: Batch = {}
    for name, column in batch.items():
        if (
            isinstance(column, np.ndarray)
            and column.dtype == object
            and len(column)
            and isinstance(column[0], np.ndarray | list | tuple)
        ):
            rows = [np.asarray(v) for v in column]
            out[name] = np.stack(rows) if len({r.shape for r in rows}) == 1 else column
        else:
            out[name] = column
    return out
